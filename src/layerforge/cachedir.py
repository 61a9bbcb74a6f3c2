"""The machine cache directory (``--cache-dir``): its areas, who uses it, a lock against ``gc``.

**Areas.** Every directory layerforge writes under the cache is an :class:`Area` declared here,
with the kind of its entries and the names an entry may have. Writers ask for
``AREA.path(cache_dir, key)``; ``gc`` (:mod:`layerforge.gc.cachegc`) walks :data:`AREAS` and
asks :meth:`Area.kind_of` what an entry is, so no module spells a cache path or parses one.

Several projects (stores) may share one cache directory. Two small pieces of bookkeeping let
``layerforge gc`` clean it without breaking any of them:

- **Known stores.** Every operation that fills the cache (``lock``, ``build``, ``verify``,
  ``export dockerfiles``) records its store and manifest under ``CACHE/stores/<16 hex>.json``
  (once; the file names the hash of the store path). ``gc`` keeps every cache entry that any
  known store (that still exists) reaches, not only the entries of the store it cleans.
- **A lock.** Those operations hold a shared ``flock`` on ``CACHE/.lock`` while they run;
  ``gc`` cleans the cache only if it gets the lock exclusively, i.e. when no build, verify or
  lock of a layerforge with this lock is using the cache. (It does not wait: a build can take
  an hour.) Child processes do not inherit the lock file.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, ParamSpec, Protocol, TypeVar, runtime_checkable

from layerforge.fsutil import atomic_write

STORES = "stores"
LOCK = ".lock"
TEMPORARY_PREFIX = ".tmp-"  # work directories and files of a writer in progress, in any area

# what an area's entries are (gc's rules depend on it):
#   store-derived (made again cheaply from a store's blobs): chain, layer, image, manifest
#   input-keyed (expensive: debootstrap, apt, compiles): tarball, debootstrap, system-layer,
#   downloads, built-wheel; temporary: a writer's leftovers; legacy: the areas of earlier
#   versions, read by nobody (removed whole by gc and by eviction)
Kind = Literal[
    "chain", "layer", "image", "manifest",
    "tarball", "debootstrap", "system-layer", "downloads", "built-wheel", "deb",
    "temporary", "releases", "legacy",
]  # fmt: skip
_HEX = frozenset("0123456789abcdef")


def _hex(length: int) -> Callable[[str], bool]:
    return lambda name: len(name) == length and set(name) <= _HEX


@dataclass(frozen=True)
class Area:
    """A directory under the cache whose entries are all of one ``kind``."""

    name: str  # relative to the cache directory
    kind: Kind | None  # None: only temporaries are ever removed from it
    accepts: Callable[[str], bool]  # which entry names are of ``kind`` (others: left alone)

    def path(self, cache_dir: Path, *parts: str) -> Path:
        return cache_dir.joinpath(self.name, *parts)

    def kind_of(self, name: str) -> Kind | None:
        """What the entry ``name`` of this area is; None: not ours, never touched."""
        if name.startswith(TEMPORARY_PREFIX) or self.kind == "temporary":
            return "temporary"
        return self.kind if self.kind is not None and self.accepts(name) else None


# one layer unpacked alone, once per digest: layers/<layer hex[:32]>/{tree,meta.json,.used}
LAYER_TREES = Area("layers", "layer", _hex(32))
# a chain of layers as a link farm of their trees (verify, system steps, bytecode):
# roots/<chain id>/{rootfs,meta.json,.used}
ROOTS = Area("roots", "chain", _hex(32))
# earlier versions: whole chains extracted (rootfs/<chain id>/rootfs) and app layers alone
# (app/<layer hex[:32]>); nothing reads them any more
CHAINS = Area("rootfs", "legacy", _hex(32))
APPS = Area("app", "legacy", _hex(32))
# bytecode compiled by verify, per chain: pyc/<chain id>/<owner>
PYC = Area("pyc", "chain", _hex(32))
# an OS image (oci: and registry: sources) unpacked: unpacked/<manifest hex[:32]>/rootfs
IMAGES = Area("unpacked", "image", _hex(32))
# a rootfs: tarball, unpacked: tarballs/<sha256[:24]>
TARBALLS = Area("tarballs", "tarball", _hex(24))
# a debootstrap root: debootstrap/<inputs key>/rootfs
DEBOOTSTRAP = Area("debootstrap", "debootstrap", _hex(24))
# the .deb files of locked Debian packages (sources/debian.py): debs/<sha256>.deb
DEBS = Area("debs", "deb", lambda n: n.endswith(".deb") and _hex(64)(n.removesuffix(".deb")))
# system layers reused machine-wide: sandbox/layers/<key>.{json,blob}
SYSTEM_LAYERS = Area("sandbox/layers", "system-layer", lambda n: n.endswith((".json", ".blob")))
# downloads mounted into the sandbox: sandbox/apt (the apt archive cache), pip, uv
DOWNLOADS = Area("sandbox", "downloads", lambda n: n in ("apt", "pip", "uv"))
# wheels built from locked sdists (builder/sdist.py): built-wheels/<key>/{wheel.json,*.whl}
BUILT_WHEELS = Area("built-wheels", "built-wheel", _hex(64))
# validated manifests: manifest/<sha256 of the text>.json
MANIFESTS = Area(
    "manifest", "manifest", lambda n: n.endswith(".json") and _hex(64)(n.removesuffix(".json"))
)
# release dates read by `suggest` (PEP 691 pages, a day): releases/<sha256(index, name)[:32]>.json
RELEASES = Area(
    "releases", "releases", lambda n: n.endswith(".json") and _hex(32)(n.removesuffix(".json"))
)
# staging of a build in progress (installs, OS layers): everything in it is temporary
STAGE = Area("stage", "temporary", lambda _name: True)
# registrations of the stores using this cache (see below): only temporaries are removed
REGISTRATIONS = Area(STORES, None, lambda _name: False)
# registries found unreachable, remembered for a few minutes: registry-status/<16 hex>.json
REGISTRY_STATUS = Area("registry-status", "temporary", lambda _name: True)

# the unpacked areas that the least-recently-used eviction keeps under ``cache_max``
UNPACKED = (LAYER_TREES, ROOTS)

AREAS = (
    LAYER_TREES, ROOTS, CHAINS, APPS, PYC, IMAGES, TARBALLS, DEBOOTSTRAP, DEBS,
    SYSTEM_LAYERS, DOWNLOADS, BUILT_WHEELS, MANIFESTS, STAGE, REGISTRATIONS, RELEASES,
    REGISTRY_STATUS,
)  # fmt: skip

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class KnownStore:
    store: Path
    manifest: Path | None
    record: Path  # the registration file under CACHE/stores/


@runtime_checkable
class CacheUser(Protocol):
    """What :func:`uses_cache` looks for among a function's arguments (an api.Workspace)."""

    @property
    def manifest(self) -> Path: ...
    @property
    def store(self) -> Path: ...
    @property
    def cache_dir(self) -> Path: ...


def _record_path(cache_dir: Path, store: Path) -> Path:
    name = hashlib.sha256(str(store).encode()).hexdigest()[:16]
    return REGISTRATIONS.path(cache_dir, f"{name}.json")


def register(cache_dir: Path, store: Path, manifest: Path | None) -> None:
    """Record that ``store`` (built from ``manifest``) uses ``cache_dir`` (idempotent)."""
    doc = {"store": str(store), "manifest": str(manifest) if manifest else None}
    data = json.dumps(doc, indent=1, sort_keys=True).encode()
    path = _record_path(cache_dir, store)
    with contextlib.suppress(OSError):
        if path.read_bytes() == data:
            return
    atomic_write(path, data)


def known_stores(cache_dir: Path) -> list[KnownStore]:
    """Every registration (the store may no longer exist); unreadable files are skipped."""
    directory = REGISTRATIONS.path(cache_dir)
    out: list[KnownStore] = []
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        try:
            doc = json.loads(path.read_text())
            manifest = doc.get("manifest")
            out.append(KnownStore(Path(doc["store"]), Path(manifest) if manifest else None, path))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return out


def _open_lock(cache_dir: Path) -> int:
    cache_dir.mkdir(parents=True, exist_ok=True)
    return os.open(cache_dir / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)


@contextlib.contextmanager
def using(cache_dir: Path, store: Path, manifest: Path | None) -> Iterator[None]:
    """Register ``store`` and hold the shared lock while the body uses the cache (waits
    while a ``gc`` cleans it)."""
    fd = _open_lock(cache_dir)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        register(cache_dir, store, manifest)
        yield
    finally:
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def exclusive(cache_dir: Path) -> Iterator[bool]:
    """Try to take the lock exclusively without waiting: True if taken (for the body)."""
    fd = _open_lock(cache_dir)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def uses_cache(func: Callable[P, R]) -> Callable[P, R]:
    """Run ``func`` inside :func:`using` for the first :class:`CacheUser` argument."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        ws = next((a for a in (*args, *kwargs.values()) if isinstance(a, CacheUser)), None)
        if ws is None:
            return func(*args, **kwargs)
        with using(ws.cache_dir, ws.store, ws.manifest):
            return func(*args, **kwargs)

    return wrapper
