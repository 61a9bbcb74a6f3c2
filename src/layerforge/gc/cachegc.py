"""Garbage collection of the machine cache directory (``--cache-dir``), after the store's.

What the cache holds, and what each entry is keyed by (the areas are declared in
:mod:`layerforge.cachedir`; gc asks them what an entry is and never parses a name itself):

==========================  ===============================================  ===============
entry                       keyed by (written by)                            kind
==========================  ===============================================  ===============
``layers/<32 hex>/``        one layer's digest (its tree, unpacked once)     ``layer``
``roots/<32 hex>/``         chain of layer digests (a link farm of trees:    ``chain``
                            verify, system steps, bytecode)
``rootfs/``, ``app/``       earlier versions' unpacked chains and layers     ``legacy``
``pyc/<32 hex>/``           chain of layer digests (verify's bytecode)       ``chain``
``unpacked/<32 hex>/``      an OS image's manifest digest (``oci:`` and      ``image``
                            registry sources)
``tarballs/<24 hex>/``      sha256 of a ``rootfs:`` tarball                  ``tarball``
``debootstrap/<24 hex>/``   the debootstrap inputs                           ``debootstrap``
                            (or the locked Debian packages of the root)
``debs/<64 hex>.deb``       a locked .deb's sha256 (``sources/debian.py``)   ``deb``
``sandbox/layers/K.*``      a system layer's inputs (machine-wide reuse)     ``system-layer``
``sandbox/{apt,pip,uv}``    downloads, mounted into the sandbox              ``downloads``
``built-wheels/<64 hex>/``  a locked sdist and its build root (the wheel     ``built-wheel``
                            ``builder/sdist.py`` built from it)
``manifest/<64 hex>.json``  the text of a ``layerforge.toml`` (validation)    ``manifest``
``stage/*``, ``*/.tmp-*``   work directories of a build in progress          ``temporary``
==========================  ===============================================  ===============

A ``manifest`` entry goes when it is not the one of a known project's current manifest text.
The first three are derived from a store's blobs and cheap to make again; gc removes one when
no *known store* reaches it (:mod:`layerforge.cachedir`: every store that used this cache and
still exists, the cleaned one as it is after its own gc; an ``image`` is also reached by the
OS source identities in a known project's lock). The input-keyed ones are expensive to make
again (debootstrap, apt and compile steps) and are removed only with ``all_caches``.
Temporaries are removed when nothing in them was modified for ``grace`` seconds (a crashed
build's leftovers). ``legacy`` entries (nothing reads them) always go.

**A cap on the unpacked trees.** ``layers/`` and ``roots/`` are then brought under ``cap``
bytes (``cache_max``; by default half of the free space plus their own size), the least
recently used first (:func:`evict`, also run at the end of a build): their sizes are in each
entry's ``meta.json`` (a farm costs its directories; its files are its trees'), their last
use is the mtime of ``.used``. A tree goes with every farm that links it, so what the figures
say is freed is freed. Nothing modified within ``grace`` (default one hour) is ever removed, and
nothing at all unless gc holds the cache lock exclusively (no build is running).

A directory is removed by renaming it to ``.tmp-gc-*`` first (readers see the whole entry or
none), then deleting it. Freed bytes are disk usage; a file hardlinked from elsewhere (``cp
-al`` between chains, a store blob) counts only if every link goes.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import stat
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from layerforge import cachedir
from layerforge.errors import LayerforgeError
from layerforge.gc.storegc import GcResult, documents, reachable
from layerforge.lock import lockfile
from layerforge.manifest import cache_entry
from layerforge.oci.layout import Descriptor, Store
from layerforge.oci.unpack import META, USED, chain_id

GRACE = 3600.0  # seconds: never touch what changed this recently
GC_PREFIX = ".tmp-gc-"
STORE_DERIVED = ("chain", "layer", "image", "manifest")
INPUT_KEYED = ("tarball", "debootstrap", "system-layer", "downloads", "built-wheel", "deb")


@dataclass(frozen=True)
class CacheEntry:
    path: Path
    area: str  # directory under the cache: rootfs, app, unpacked, stage, sandbox/layers, ...
    kind: cachedir.Kind
    size: int = 0  # bytes freed by removing it

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "area": self.area, "kind": self.kind, "size": self.size}


@dataclass(frozen=True)
class CacheGcResult:
    cache_dir: Path
    dry_run: bool
    removed: tuple[CacheEntry, ...] = ()
    stores: tuple[Path, ...] = ()  # known stores whose entries were kept
    forgotten: tuple[Path, ...] = ()  # registrations of stores that no longer exist
    skipped: str | None = None  # why the cache was left alone

    @property
    def freed(self) -> int:
        return sum(e.size for e in self.removed)

    def by_area(self) -> dict[str, tuple[int, int]]:
        """area -> (entries, bytes freed)."""
        out: dict[str, tuple[int, int]] = {}
        for e in self.removed:
            count, size = out.get(e.area, (0, 0))
            out[e.area] = (count + 1, size + e.size)
        return dict(sorted(out.items()))

    def to_json(self) -> dict[str, Any]:
        return {
            "cache_dir": str(self.cache_dir),
            "dry_run": self.dry_run,
            "skipped": self.skipped,
            "removed": [e.to_json() for e in self.removed],
            "freed": self.freed,
            "by_area": {a: {"entries": n, "freed": s} for a, (n, s) in self.by_area().items()},
            "stores": [str(s) for s in self.stores],
            "forgotten": [str(s) for s in self.forgotten],
        }


@dataclass
class Live:
    """Names of the store-derived entries that some known store still needs."""

    chain: set[str] = field(default_factory=set)
    layer: set[str] = field(default_factory=set)
    image: set[str] = field(default_factory=set)
    manifest: set[str] = field(default_factory=set)

    def needs(self, kind: str, name: str) -> bool:
        return name in getattr(self, kind)

    def add_images(self, store: Store, roots: Iterable[Descriptor], blobs: Iterable[str]) -> None:
        for layers in _image_layers(store, roots):
            self.chain.update(chain_id(layers[:n]) for n in range(1, len(layers) + 1))
            self.layer.update(_hex32(d) for d in layers)
        self.image.update(_hex32(d) for d in blobs)

    def add_project(self, cache_dir: Path, manifest: Path | None) -> None:
        """The validation-cache entry of a project's manifest and the OS images its lock pins
        (``unpacked/`` entries of its root bases)."""
        if manifest is None:
            return
        entry = cache_entry(cache_dir, manifest)
        if entry is not None:
            self.manifest.add(entry.name)
        lock = lockfile.read_optional(manifest.parent / lockfile.LOCK_NAME)
        for node in lock.nodes.values() if lock else ():
            identity = node.os_identity
            if identity is not None and identity.startswith("sha256:"):
                self.image.add(_hex32(identity))


def _hex32(digest: str) -> str:
    return digest.split(":", 1)[-1][:32]


def _image_layers(store: Store, roots: Iterable[Descriptor]) -> Iterator[list[str]]:
    """The layer digests of every image manifest the roots reach (through indexes)."""
    for _, doc in documents(store, roots):
        if isinstance(doc.get("layers"), list):
            yield [str(x["digest"]) for x in doc["layers"]]


# -- which stores count ---------------------------------------------------------------------


def _exists(root: Path) -> bool:
    return (root / "oci-layout").is_file() and (root / "index.json").is_file()


def known_live(
    cache_dir: Path, store: Store, manifest: Path | None, gc: GcResult | None
) -> tuple[Live, list[Path], list[cachedir.KnownStore]]:
    """What the cleaned store (as it is after ``gc``) and every other known store need;
    the stores counted and the registrations of stores that are gone. Raises
    LayerforgeError if a known store or lock cannot be read (then nothing is safe)."""
    live = Live()
    dropped = set(gc.untagged) if gc else set()
    roots = [d for ref, d in store.tags().items() if ref not in dropped]
    live.add_images(store, roots, reachable(store, roots) if gc else store.blobs())
    live.add_project(cache_dir, manifest)
    counted, gone = [store.root], []
    for known in cachedir.known_stores(cache_dir):
        if known.store == store.root:
            continue
        if not _exists(known.store):
            gone.append(known)
            continue
        try:
            other = Store.open(known.store, create=False)
            live.add_images(other, other.tags().values(), other.blobs())
            live.add_project(cache_dir, known.manifest)
        except (LayerforgeError, OSError, ValueError, KeyError) as exc:
            raise LayerforgeError(
                f"cannot read {known.store}, which shares the cache {cache_dir}: {exc}",
                hint=f"if that project is gone, delete {known.record}",
            ) from exc
        counted.append(known.store)
    return live, counted, gone


# -- which entries go -----------------------------------------------------------------------


def _newest_mtime(path: Path, since: float) -> float:
    """The newest modification time in the tree (stops early at one newer than ``since``)."""
    newest = path.lstat().st_mtime
    if not path.is_dir() or path.is_symlink() or newest >= since:
        return newest
    for top, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            with contextlib.suppress(OSError):
                newest = max(newest, os.lstat(os.path.join(top, name)).st_mtime)
                if newest >= since:
                    return newest
    return newest


def _goes(entry: CacheEntry, live: Live, all_caches: bool, cutoff: float) -> bool:
    try:
        return _judge(entry, live, all_caches, cutoff)
    except FileNotFoundError:  # removed meanwhile (by a process that does not take the lock)
        return False


def _judge(entry: CacheEntry, live: Live, all_caches: bool, cutoff: float) -> bool:
    if entry.kind == "temporary":
        return entry.path.name.startswith(GC_PREFIX) or _newest_mtime(entry.path, cutoff) < cutoff
    if entry.kind == "legacy":
        return True
    if entry.path.lstat().st_mtime >= cutoff:
        return False
    if entry.kind in STORE_DERIVED:
        return not live.needs(entry.kind, entry.path.name)
    return all_caches


def candidates(cache_dir: Path) -> Iterator[CacheEntry]:
    """Every entry gc knows how to judge (anything else under the cache is never touched)."""
    for area in cachedir.AREAS:
        directory = area.path(cache_dir)
        if not directory.is_dir() or directory.is_symlink():
            continue
        for child in sorted(directory.iterdir()):
            kind = area.kind_of(child.name)
            if kind is not None:
                yield CacheEntry(child, area.name, kind)


def _sized(entries: list[CacheEntry]) -> list[CacheEntry]:
    """Each entry with the disk space its removal frees (hardlinks counted once, and only
    when every link to the file is among the removed entries)."""
    links: dict[tuple[int, int], list[int]] = {}  # inode -> [links seen, nlink, blocks, owner]
    sizes = [0] * len(entries)
    for i, entry in enumerate(entries):
        for st in _lstats(entry.path):
            if stat.S_ISDIR(st.st_mode) or st.st_nlink <= 1:
                sizes[i] += st.st_blocks * 512
                continue
            counts = links.setdefault((st.st_dev, st.st_ino), [0, st.st_nlink, st.st_blocks, i])
            counts[0] += 1
    for found, nlink, blocks, owner in links.values():
        if found >= nlink:
            sizes[owner] += blocks * 512
    return [CacheEntry(e.path, e.area, e.kind, s) for e, s in zip(entries, sizes, strict=True)]


def _lstats(path: Path) -> Iterator[os.stat_result]:
    with contextlib.suppress(OSError):
        yield path.lstat()
    if path.is_dir() and not path.is_symlink():
        for top, dirs, files in os.walk(path):
            for name in (*dirs, *files):
                with contextlib.suppress(OSError):
                    yield os.lstat(os.path.join(top, name))


def remove_entry(path: Path) -> None:
    """Rename a directory out of the way (atomically), then delete it; unlink a file."""
    if not path.is_dir() or path.is_symlink():
        path.unlink(missing_ok=True)
        return
    doomed = path
    if not path.name.startswith(GC_PREFIX):
        doomed = path.with_name(f"{GC_PREFIX}{secrets.token_hex(4)}-{path.name}")
        try:
            path.rename(doomed)
        except FileNotFoundError:
            return
    try:
        shutil.rmtree(doomed)
    except OSError:  # read-only directories of an unpacked image (when not root)
        for top, dirs, _ in os.walk(doomed):
            for name in dirs:
                with contextlib.suppress(OSError):
                    os.chmod(os.path.join(top, name), 0o700)
        shutil.rmtree(doomed, ignore_errors=True)  # what is left goes at the next gc


def collect_caches(
    cache_dir: Path,
    store: Store,
    manifest: Path | None = None,
    gc: GcResult | None = None,
    *,
    dry_run: bool = False,
    all_caches: bool = False,
    now: float | None = None,
    grace: float = GRACE,
    cap: int | None = None,
) -> CacheGcResult:
    """Remove the cache entries no known store needs (see the module docstring).

    ``gc`` is the store's own gc result (in a dry run, the store is judged as that gc would
    leave it). ``dry_run``: report, change nothing (not even the registrations).
    """
    if not cache_dir.is_dir():
        return CacheGcResult(cache_dir, dry_run)
    with cachedir.exclusive(cache_dir) as locked:
        if not locked:
            reason = "a build, verify or lock is using it; run gc again when it has finished"
            return CacheGcResult(cache_dir, dry_run, skipped=reason)
        try:
            live, counted, gone = known_live(cache_dir, store, manifest, gc)
        except LayerforgeError as exc:
            return CacheGcResult(cache_dir, dry_run, skipped=str(exc))
        cutoff = (time.time() if now is None else now) - grace
        doomed = _sized([e for e in candidates(cache_dir) if _goes(e, live, all_caches, cutoff)])
        gone_paths = {e.path for e in doomed}
        doomed += evict(cache_dir, cap, dry_run=True, without=gone_paths)
        if not dry_run:
            for entry in doomed:
                remove_entry(entry.path)
            for known in gone:
                known.record.unlink(missing_ok=True)
            cachedir.register(cache_dir, store.root, manifest)
    return CacheGcResult(
        cache_dir, dry_run, tuple(doomed), tuple(counted), tuple(k.store for k in gone)
    )


# -- least-recently-used eviction of the unpacked trees ---------------------------------------


@dataclass(frozen=True)
class _Unpacked:
    entry: CacheEntry
    used: float  # when it was last used (mtime of .used)
    layers: tuple[str, ...]  # a farm: the trees it links (hex names)


def default_cap(cache_dir: Path, current: int) -> int:
    """Half of what the unpacked areas could take: the free space plus their own size."""
    return (shutil.disk_usage(cache_dir).free + current) // 2


def _unpacked(cache_dir: Path, without: set[Path]) -> list[_Unpacked]:
    out: list[_Unpacked] = []
    for area in cachedir.UNPACKED:
        directory = area.path(cache_dir)
        if not directory.is_dir() or directory.is_symlink():
            continue
        for child in directory.iterdir():
            kind = area.kind_of(child.name)
            if kind is None or kind == "temporary" or child in without:
                continue
            try:
                doc = json.loads((child / META).read_text())
                used = (child / USED).stat().st_mtime if (child / USED).exists() else 0.0
                size = int(doc.get("bytes", 0))
                layers = tuple(str(x) for x in doc.get("layers", ()))
            except (OSError, ValueError, TypeError, AttributeError):
                continue  # not finished, or not ours: gc's other rules judge it
            out.append(_Unpacked(CacheEntry(child, area.name, kind, size), used, layers))
    return out


def evict(
    cache_dir: Path, cap: int | None, *, dry_run: bool = False, without: set[Path] | None = None
) -> list[CacheEntry]:
    """Remove the least recently used trees and farms until ``layers/`` and ``roots/`` take
    at most ``cap`` bytes (default: :func:`default_cap`); the caller holds the cache lock
    exclusively. ``without``: entries already being removed. Returns what goes."""
    if not cache_dir.is_dir():
        return []
    entries = _unpacked(cache_dir, without or set())
    total = sum(e.entry.size for e in entries)
    limit = default_cap(cache_dir, total) if cap is None else cap
    if total <= limit:
        return []
    doomed = _choose(entries, total, limit)
    # farms first: a tree is gone from the disk only once no farm links it
    out = sorted(doomed.values(), key=lambda e: e.kind != "chain")
    if not dry_run:
        for entry in out:
            remove_entry(entry.path)
    return out


def _choose(entries: list[_Unpacked], total: int, limit: int) -> dict[Path, CacheEntry]:
    doomed: dict[Path, CacheEntry] = {}
    for item in sorted(entries, key=lambda e: (e.used, e.entry.path.name)):
        if total <= limit:
            break
        if item.entry.path in doomed:
            continue
        doomed[item.entry.path] = item.entry
        total -= item.entry.size
        if item.entry.kind == "layer":  # its farms hold its files: they go with it
            for other in entries:
                if item.entry.path.name in other.layers and other.entry.path not in doomed:
                    doomed[other.entry.path] = other.entry
                    total -= other.entry.size
    return doomed
