"""Disk preflight: estimate what a build writes, compare it with the free space, refuse early.

Estimates, per node the plan builds (conservative on purpose, it is cheaper to refuse than
to fail halfway through a 10 GB build):

- store: its dependency layers, ``LAYER_FACTOR`` x the wheel bytes of its locked
  distributions (a layer is the installed files gzip'ed, a little larger than the wheel),
  except those the layer cache already holds (the node's layers, or a distribution's own
  layer, reused by wheel);
  for a root base, its OS layers (nothing if ``lock`` already put them in the store, else
  their size in the last image of that node, else ``OS_LAYER_GUESS``); for a service, its
  source tree;
- cache: staging of the installed distributions (``INSTALL_FACTOR`` x wheel bytes), for the
  ``jobs`` largest nodes at once (staging is removed after each node); for a debootstrap
  source not cached yet, ``DEBOOTSTRAP_GUESS``. When uv's cache is on the same filesystem,
  uv hardlinks the installed files from it (``--link-mode hardlink``): staging then takes
  new blocks only for what is rewritten (RECORDs, scripts, bytecode), ``LINKED_FACTOR`` x
  the wheel bytes. A CUDA torch stack (4 GB of wheels) was refused on a 14 GB runner it
  fits on when staging was counted as copies.

- cache, for the sandbox (:func:`unpack_estimate`): the layer trees that verify, system steps
  and bytecode unpack and that ``CACHE/layers/`` does not hold yet, each once (a built
  layer: its uncompressed size; a layer this build writes: ``INSTALL_FACTOR`` x its wheel
  bytes, ``UNPACK_FACTOR`` x the compressed size of OS layers, the source tree of a
  service), and the largest work copy of a system step (the parent image, uncompressed);
- uv's cache: the wheel bytes to install (an upper bound: uv's cache is not inspected).

Needs on the same filesystem add up; each filesystem's total must fit in its free space.

The factors are checked against a real cold build of the example fleet
(tests/integration/test_disk_estimate.py, disk use as ``du`` counts it). Measured there: its
layers take 1.18x the wheel bytes and the two largest stagings 3.47x, so the factors leave
~25% and ~15% of room; the OS layer guess is 2.1x its real 72 MB and the debootstrap guess
2.2x its real 180 MB.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from layerforge import cachedir
from layerforge.builder.context import BuildContext
from layerforge.builder.deps import wheel_bytes_to_install
from layerforge.errors import DiskSpaceError
from layerforge.lock.lockfile import DebPackage, Lock
from layerforge.manifest import Project
from layerforge.oci.layer import Layer
from layerforge.oci.layout import Store
from layerforge.plan import Plan
from layerforge.records import read_record
from layerforge.sandbox.verify import checks
from layerforge.sizes import format_size
from layerforge.sources.debootstrap import debootstrap_key, locked_debootstrap_key
from layerforge.sources.materialize import record_path

LAYER_FACTOR = 1.5
INSTALL_FACTOR = 4.0
LINKED_FACTOR = 0.25  # staging hardlinked from uv's cache: only rewritten files are new
OS_LAYER_GUESS = 150_000_000
DEBOOTSTRAP_GUESS = 400_000_000
UNPACK_FACTOR = 3.0  # an OS layer unpacked, against its gzip'ed size


@dataclass(frozen=True)
class Need:
    """``needed`` bytes on the filesystem holding ``path``, which has ``free`` bytes free."""

    path: Path
    needed: int
    free: int

    @property
    def fits(self) -> bool:
        return self.needed <= self.free


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _os_rows(lock: Lock, node: str) -> tuple[DebPackage, ...]:
    """The locked Debian packages of a root (lock version 2): its source record is its own."""
    locked = lock.nodes.get(node)
    return locked.source.os if locked is not None and locked.source is not None else ()


def _os_layers(store: Store, project: Project, node: str, rows: tuple[DebPackage, ...]) -> int:
    source = project.nodes[node].os_source
    if source is not None:
        path = record_path(store, source, rows)  # written when `lock` materialized the source
        if path.is_file():
            layers = json.loads(path.read_text()).get("layers", [])
            if all(store.has_blob(str(x["descriptor"]["digest"])) for x in layers):
                return 0
    record = read_record(store, f"{node}:latest")
    if record is None:
        return OS_LAYER_GUESS
    return sum(x.descriptor.size for x in record.layers if "pip" not in x.created_by)


def _os_cache(project: Project, node: str, cache_dir: Path, rows: tuple[DebPackage, ...]) -> int:
    source = project.nodes[node].os_source
    if source is None or source.kind != "debootstrap":
        return 0
    key = locked_debootstrap_key(source, rows) if rows else debootstrap_key(source)
    cached = cachedir.DEBOOTSTRAP.path(cache_dir, key, "rootfs")
    return 0 if cached.is_dir() else DEBOOTSTRAP_GUESS


def staging_factor(cache_dir: Path, uv_cache: Path | None) -> float:
    """Disk bytes staging takes per wheel byte: copies, or hardlinks into uv's cache when
    it is on the cache directory's filesystem (see the module docstring)."""
    if uv_cache is None:
        return INSTALL_FACTOR
    same = os.stat(_existing(uv_cache)).st_dev == os.stat(_existing(cache_dir)).st_dev
    return LINKED_FACTOR if same else INSTALL_FACTOR


def estimate(
    plan: Plan, ctx: BuildContext, staging_per_byte: float = INSTALL_FACTOR
) -> tuple[int, int]:
    """(bytes the store needs, bytes the cache needs) to build ``plan``; staging takes
    ``staging_per_byte`` per wheel byte (:func:`staging_factor`)."""
    project, lock, store, cache_dir = ctx.project, ctx.lock, ctx.store, ctx.cache_dir
    store_bytes = 0
    staging: list[int] = []
    cache_bytes = 0
    for step in plan.to_build:
        packages = lock.nodes[step.node].packages
        wheels = wheel_bytes_to_install(ctx, packages, project.python)
        store_bytes += int(wheels * LAYER_FACTOR)
        staging.append(int(wheels * staging_per_byte))
        if project.nodes[step.node].os_source is not None:
            store_bytes += _os_layers(store, project, step.node, _os_rows(lock, step.node))
            cache_bytes += _os_cache(project, step.node, cache_dir, _os_rows(lock, step.node))
        tree = ctx.trees.get(step.node)
        if tree is not None:
            store_bytes += sum(f.size for f in tree.files)
    cache_bytes += sum(sorted(staging, reverse=True)[: max(1, ctx.jobs)])
    return store_bytes, cache_bytes


@dataclass(frozen=True)
class Unpacking:
    """What the sandbox steps of a build unpack (bytes)."""

    trees: int = 0  # layer trees not unpacked yet
    copy: int = 0  # the largest system step's work copy


def _needs_root(ctx: BuildContext, name: str) -> bool:
    node = ctx.project.nodes[name]
    verifies = ctx.verify and bool(checks(node))
    return verifies or bool(node.system or node.run) or node.compile_bytecode


def _built_layers(ctx: BuildContext, name: str, tag: str) -> list[Layer] | None:
    record = read_record(ctx.store, f"{name}:{tag}") or read_record(ctx.store, f"{name}:latest")
    return None if record is None else list(record.layers)


def _new_layers(ctx: BuildContext, name: str) -> tuple[int, list[Layer]]:
    """What a build of ``name`` adds to its chain: the unpacked size of the layers it writes
    (estimated), and OS layers already in the store (known by digest and size)."""
    project = ctx.project
    packages = ctx.lock.nodes[name].packages
    size = int(wheel_bytes_to_install(ctx, packages, project.python) * INSTALL_FACTOR)
    tree = ctx.trees.get(name)
    size += sum(f.size for f in tree.files) if tree is not None else 0
    known: list[Layer] = []
    if project.nodes[name].os_source is not None:
        rows = _os_rows(ctx.lock, name)
        known = _stored_os_layers(ctx.store, project, name, rows)
        if not known:
            size += int(_os_layers(ctx.store, project, name, rows) * UNPACK_FACTOR)
    return size, known


def _stored_os_layers(
    store: Store, project: Project, node: str, rows: tuple[DebPackage, ...]
) -> list[Layer]:
    """The OS layers ``lock`` put in the store for a root base (empty if unknown)."""
    source = project.nodes[node].os_source
    path = record_path(store, source, rows) if source is not None else None
    if path is None or not path.is_file():
        return []
    try:
        layers = [Layer.from_json(x) for x in json.loads(path.read_text()).get("layers", [])]
    except (ValueError, KeyError, TypeError):
        return []
    return layers if all(x.uncompressed_size for x in layers) else []


def unpack_estimate(plan: Plan, ctx: BuildContext) -> Unpacking:
    """The layer trees the build's verify, system and bytecode steps unpack, each once, and
    the largest work copy of a system step (see the module docstring)."""
    building = {s.node: s for s in plan.to_build}
    tags = {s.node: s.tag for s in plan.steps}
    trees_root = cachedir.LAYER_TREES.path(ctx.cache_dir)
    counted: set[str] = set()  # layer digests and names of nodes being built
    trees = copy = 0

    def chain_bytes(name: str, *, count: bool) -> int:
        nonlocal trees
        total = 0
        for node in [*reversed(ctx.project.ancestors(name)), ctx.project.nodes[name]]:
            if node.name in building:
                size, layers = _new_layers(ctx, node.name)
                if count and node.name not in counted:
                    counted.add(node.name)
                    trees += size
                total += size
            else:
                layers = _built_layers(ctx, node.name, tags.get(node.name, "latest")) or []
            for layer in layers:
                digest, size = layer.descriptor.digest, layer.uncompressed_size
                total += size
                unpacked = (trees_root / digest.split(":", 1)[1][:32] / "meta.json").is_file()
                if count and digest not in counted and not unpacked:
                    counted.add(digest)
                    trees += size
        return total

    for name in building:
        if not _needs_root(ctx, name):
            continue
        chain_bytes(name, count=True)
        node = ctx.project.nodes[name]
        if (node.system or node.run) and node.parent is not None:
            copy = max(copy, chain_bytes(node.parent, count=False))
    return Unpacking(trees, copy)


def download_estimate(plan: Plan, ctx: BuildContext) -> int:
    """Wheel bytes uv may download for the build (an upper bound)."""
    python = ctx.project.python
    return sum(
        wheel_bytes_to_install(ctx, ctx.lock.nodes[s.node].packages, python) for s in plan.to_build
    )


def needs(store_root: Path, store_bytes: int, cache_dir: Path, cache_bytes: int) -> list[Need]:
    """Group the two needs by filesystem and read each one's free space."""
    return needs_of([(store_root, store_bytes), (cache_dir, cache_bytes)])


def needs_of(amounts: list[tuple[Path, int]]) -> list[Need]:
    """Group needs by filesystem and read each one's free space."""
    by_device: dict[int, tuple[Path, int]] = {}
    for path, amount in amounts:
        where = _existing(path)
        device = os.stat(where).st_dev
        first, total = by_device.get(device, (where, 0))
        by_device[device] = (first, total + amount)
    return [Need(p, n, shutil.disk_usage(p).free) for p, n in by_device.values()]


def preflight(plan: Plan, ctx: BuildContext, uv_cache: Path | None = None) -> list[Need]:
    """Raise DiskSpaceError if the build would not fit; else the needs, for the record.
    ``uv_cache``: uv's cache directory (wheels downloaded there are counted)."""
    if not plan.to_build:
        return []
    store_bytes, cache_bytes = estimate(plan, ctx, staging_factor(ctx.cache_dir, uv_cache))
    unpacking = unpack_estimate(plan, ctx)
    downloads = download_estimate(plan, ctx) if uv_cache is not None else 0
    amounts = [
        (ctx.store.root, store_bytes),
        (ctx.cache_dir, cache_bytes + unpacking.trees + unpacking.copy),
    ]
    if uv_cache is not None:
        amounts.append((uv_cache, downloads))
    terms = (
        f"store: layers {format_size(store_bytes)}; cache: staging and OS sources "
        f"{format_size(cache_bytes)}, layers to unpack {format_size(unpacking.trees)}, "
        f"system step copy {format_size(unpacking.copy)}"
        + (f"; uv cache: wheels {format_size(downloads)}" if uv_cache is not None else "")
    )
    result = needs_of(amounts)
    for need in result:
        if not need.fits:
            raise DiskSpaceError(
                f"not enough disk space for this build: it needs about "
                f"{format_size(need.needed)} on the filesystem of {need.path}, which has "
                f"{format_size(need.free)} free ({terms})",
                path=str(need.path),
                needed=need.needed,
                free=need.free,
                hint="free some space (`layerforge gc` removes images no tag reaches), or "
                "point --store / --cache-dir at a larger disk",
            )
    return result
