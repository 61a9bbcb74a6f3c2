"""Per-distribution layer cache: a distribution's own layer, reused by wheel.

A distribution whose installed size is above ``layer_threshold`` gets a layer of its own
(:func:`layerforge.build.python.group`). Its bytes depend only on the wheel (name, version,
sha256), the target Python and platform, the layer format, compression and
``SOURCE_DATE_EPOCH`` (and, with ``compile_bytecode``, the image below, whose Python
compiles it). So it is remembered under a key of exactly those (the executor computes the
key), together with the distribution's installed size and the paths of its files.

A later build of any node whose lock holds the same wheel then decides *without installing
anything* whether the distribution gets a layer of its own (its remembered installed size
against the threshold in force) and, if it does, reuses the layer: uv installs only the
other distributions and only their layers are written. Own layers are ordered by
distribution name and the shared layer comes last, whether reused or written, so the image
is the one a cold build of the same lock makes, byte for byte.

Two distributions that install the same path (say a namespace package's ``__init__.py``)
make that file's content depend on which one was installed last. Such a distribution is
never remembered, and a build where two of the distributions (reused or freshly installed)
share a path installs everything instead (:func:`collides`).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layerforge.build.python import DistFiles
from layerforge.lockfile import Package
from layerforge.oci.layout import Store, atomic_write
from layerforge.ossource import Layer


@dataclass(frozen=True)
class CachedDist:
    """A distribution's own layer, as a previous build wrote it."""

    name: str  # as its .dist-info directory spells it: own layers are sorted by it
    version: str
    installed_size: int
    layer: Layer
    paths: frozenset[str]  # the files the layer holds (members under /opt/venv)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "installed_size": self.installed_size,
            "layer": self.layer.to_json(),
            "paths": sorted(self.paths),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CachedDist:
        return cls(
            str(data["name"]),
            str(data["version"]),
            int(data["installed_size"]),
            Layer.from_json(data["layer"]),
            frozenset(str(p) for p in data["paths"]),
        )


def _path(store: Store, key: str) -> Path:
    return store.root / "layerforge" / "dists" / f"{key}.json"


def load(store: Store, key: str) -> CachedDist | None:
    """The remembered layer of ``key``, if its blob is still in the store."""
    try:
        dist = CachedDist.from_json(json.loads(_path(store, key).read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return dist if store.has_blob(dist.layer.descriptor.digest) else None


def save(store: Store, key: str, dist: DistFiles, layer: Layer) -> None:
    paths = frozenset(e.path for e in dist.entries)
    record = CachedDist(dist.name, dist.version, dist.installed_size, layer, paths)
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


def collides(dists: Sequence[DistFiles], served: Iterable[CachedDist]) -> bool:
    """Whether two of the distributions, reused or freshly installed, hold the same path."""
    counts: Counter[str] = Counter()
    for cached in served:
        counts.update(cached.paths)
    for dist in dists:
        counts.update(e.path for e in dist.entries)
    return any(n > 1 for n in counts.values())


def exclusive(dists: Sequence[DistFiles]) -> set[str]:
    """Names of the distributions none of whose paths another of ``dists`` holds."""
    counts = Counter(e.path for d in dists for e in d.entries)
    return {d.name for d in dists if all(counts[e.path] == 1 for e in d.entries)}


def canonical(name: str) -> str:
    """A distribution name as PEP 503 normalizes it (dist-info and lock names agree)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def package_of(dist: DistFiles, packages: Iterable[Package]) -> Package | None:
    wanted = canonical(dist.name)
    return next((p for p in packages if canonical(p.name) == wanted), None)


def ordered(own: Iterable[tuple[str, Layer]]) -> list[Layer]:
    """Own layers, reused or written, in the order a cold build writes them: by name."""
    return [layer for _, layer in sorted(own, key=lambda item: item[0])]
