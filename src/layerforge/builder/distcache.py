"""Per-distribution layer cache: a distribution's own layer, reused by wheel.

A distribution whose installed size is above ``layer_threshold`` gets a layer of its own
(:func:`layerforge.builder.python.group`). Its bytes depend only on the wheel (name, version,
sha256), the target Python and platform, the layer format, compression and
``SOURCE_DATE_EPOCH`` (and, with ``compile_bytecode``, the layers below that make the Python
that compiles it: see ``deps.interpreter_layers``). So it is remembered under a key of
exactly those (the executor computes the key), together with the distribution's installed
size and the paths of its files.

A later build of any node whose lock holds the same wheel then decides *without installing
anything* whether the distribution gets a layer of its own (its remembered installed size
against the threshold in force) and, if it does, reuses the layer: uv installs only the
other distributions and only their layers are written. Own layers are ordered by
distribution name and the shared layer comes last, whether reused or written, so the image
is the one a cold build of the same lock makes, byte for byte.

Two distributions may install the same path (the NVIDIA wheels all ship an empty
``nvidia/__init__.py``). Where their RECORDs give that file the same hash, the order of
installation does not matter. Where they do not (or give none), the file's content depends
on what was installed with it (:mod:`layerforge.builder.overlap` gives it the bytes of the
later install in dependency order, deterministically): a distribution that shares such a
path with another one installed with it is never remembered (:func:`reusable`), and a
build where a reused distribution would share one with another (reused or fresh) installs
everything together instead (:func:`collides`), as a cold build does.
"""

from __future__ import annotations

import csv
import io
import json
import posixpath
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layerforge.builder.python import DistFiles
from layerforge.fsutil import atomic_write
from layerforge.lock.lockfile import Package
from layerforge.oci.layer import Layer
from layerforge.oci.layout import Store
from layerforge.records import dists_dir


@dataclass(frozen=True)
class CachedDist:
    """A distribution's own layer, as a previous build wrote it."""

    name: str  # as its .dist-info directory spells it: own layers are sorted by it
    version: str
    installed_size: int
    layer: Layer
    files: Mapping[str, str]  # the files the layer holds (members) -> their RECORD hash

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "installed_size": self.installed_size,
            "layer": self.layer.to_json(),
            "files": dict(sorted(self.files.items())),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CachedDist:
        return cls(
            str(data["name"]),
            str(data["version"]),
            int(data["installed_size"]),
            Layer.from_json(data["layer"]),
            {str(k): str(v) for k, v in dict(data["files"]).items()},
        )


def _path(store: Store, key: str) -> Path:
    return dists_dir(store.root) / f"{key}.json"


def load(store: Store, key: str) -> CachedDist | None:
    """The remembered layer of ``key``, if its blob is still in the store."""
    try:
        dist = CachedDist.from_json(json.loads(_path(store, key).read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return dist if store.has_blob(dist.layer.descriptor.digest) else None


def save(store: Store, key: str, dist: DistFiles, layer: Layer) -> None:
    record = CachedDist(dist.name, dist.version, dist.installed_size, layer, file_hashes(dist))
    atomic_write(_path(store, key), json.dumps(record.to_json(), indent=0).encode())


def servable(
    packages: Iterable[Package],
    lookup: Callable[[Package], CachedDist | None],
    threshold: int,
) -> dict[str, CachedDist]:
    """By lock name: the packages whose own layer the cache holds and that get a layer of
    their own under ``threshold`` (a distribution at or below it goes to the shared layer,
    which needs it installed)."""
    out: dict[str, CachedDist] = {}
    for package in packages:
        hit = lookup(package)
        if hit is not None and hit.installed_size > threshold:
            out[package.name] = hit
    return out


def file_hashes(dist: DistFiles) -> dict[str, str]:
    """Each file of ``dist`` (member name) -> its hash in the RECORD ("" where none)."""
    record = next((e for e in dist.entries if e.path.endswith(".dist-info/RECORD")), None)
    listed: dict[str, str] = {}
    if record is not None and record.data is not None:
        site = record.path.rsplit("/", 2)[0]
        for row in csv.reader(io.StringIO(record.data.decode())):
            if len(row) >= 2:
                listed[posixpath.normpath(f"{site}/{row[0]}")] = row[1]
    return {e.path: listed.get(e.path, "") for e in dist.entries}


def _holders(dists: Sequence[DistFiles], served: Iterable[CachedDist]) -> dict[str, list[str]]:
    """Path -> the hash each distribution holding it gives it."""
    holders: dict[str, list[str]] = defaultdict(list)
    for cached in served:
        for path, digest in cached.files.items():
            holders[path].append(digest)
    for dist in dists:
        for path, digest in file_hashes(dist).items():
            holders[path].append(digest)
    return holders


def _agree(hashes: list[str]) -> bool:
    """One holder, or several that all give the same (known) content."""
    return len(hashes) == 1 or ("" not in hashes and len(set(hashes)) == 1)


def collides(dists: Sequence[DistFiles], served: Sequence[CachedDist]) -> bool:
    """Whether a reused distribution shares a path with another distribution (reused or
    freshly installed) whose content for it may differ."""
    holders = _holders(dists, served)
    return any(not _agree(holders[path]) for cached in served for path in cached.files)


def reusable(dists: Sequence[DistFiles]) -> set[str]:
    """Names of the distributions whose every path is theirs alone, or shared with the
    same content: their layer does not depend on what was installed with them."""
    holders = _holders(dists, ())
    return {d.name for d in dists if all(_agree(holders[e.path]) for e in d.entries)}


def canonical(name: str) -> str:
    """A distribution name as PEP 503 normalizes it (dist-info and lock names agree)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def package_of(dist: DistFiles, packages: Iterable[Package]) -> Package | None:
    wanted = canonical(dist.name)
    return next((p for p in packages if canonical(p.name) == wanted), None)


def ordered(own: Iterable[tuple[str, Layer]]) -> list[Layer]:
    """Own layers, reused or written, in the order a cold build writes them: by name."""
    return [layer for _, layer in sorted(own, key=lambda item: item[0])]
