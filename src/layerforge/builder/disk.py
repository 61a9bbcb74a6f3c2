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
  source not cached yet, ``DEBOOTSTRAP_GUESS``.

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
from layerforge.manifest import Project
from layerforge.oci.layout import Store
from layerforge.plan import Plan
from layerforge.records import read_record
from layerforge.sizes import format_size
from layerforge.sources.debootstrap import debootstrap_key
from layerforge.sources.materialize import record_path

LAYER_FACTOR = 1.5
INSTALL_FACTOR = 4.0
OS_LAYER_GUESS = 150_000_000
DEBOOTSTRAP_GUESS = 400_000_000


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


def _os_layers(store: Store, project: Project, node: str) -> int:
    source = project.nodes[node].os_source
    if source is not None:
        path = record_path(store, source)  # written when `lock` materialized the source
        if path.is_file():
            layers = json.loads(path.read_text()).get("layers", [])
            if all(store.has_blob(str(x["descriptor"]["digest"])) for x in layers):
                return 0
    record = read_record(store, f"{node}:latest")
    if record is None:
        return OS_LAYER_GUESS
    return sum(x.descriptor.size for x in record.layers if "pip" not in x.created_by)


def _os_cache(project: Project, node: str, cache_dir: Path) -> int:
    source = project.nodes[node].os_source
    if source is None or source.kind != "debootstrap":
        return 0
    cached = cachedir.DEBOOTSTRAP.path(cache_dir, debootstrap_key(source), "rootfs")
    return 0 if cached.is_dir() else DEBOOTSTRAP_GUESS


def estimate(plan: Plan, ctx: BuildContext) -> tuple[int, int]:
    """(bytes the store needs, bytes the cache needs) to build ``plan``."""
    project, lock, store, cache_dir = ctx.project, ctx.lock, ctx.store, ctx.cache_dir
    store_bytes = 0
    staging: list[int] = []
    cache_bytes = 0
    for step in plan.to_build:
        packages = lock.nodes[step.node].packages
        wheels = wheel_bytes_to_install(ctx, packages, project.python)
        store_bytes += int(wheels * LAYER_FACTOR)
        staging.append(int(wheels * INSTALL_FACTOR))
        if project.nodes[step.node].os_source is not None:
            store_bytes += _os_layers(store, project, step.node)
            cache_bytes += _os_cache(project, step.node, cache_dir)
        tree = ctx.trees.get(step.node)
        if tree is not None:
            store_bytes += sum(f.size for f in tree.files)
    cache_bytes += sum(sorted(staging, reverse=True)[: max(1, ctx.jobs)])
    return store_bytes, cache_bytes


def needs(store_root: Path, store_bytes: int, cache_dir: Path, cache_bytes: int) -> list[Need]:
    """Group the two needs by filesystem and read each one's free space."""
    by_device: dict[int, tuple[Path, int]] = {}
    for path, amount in ((store_root, store_bytes), (cache_dir, cache_bytes)):
        where = _existing(path)
        device = os.stat(where).st_dev
        first, total = by_device.get(device, (where, 0))
        by_device[device] = (first, total + amount)
    return [Need(p, n, shutil.disk_usage(p).free) for p, n in by_device.values()]


def preflight(plan: Plan, ctx: BuildContext) -> list[Need]:
    """Raise DiskSpaceError if the build would not fit; else the needs, for the record."""
    if not plan.to_build:
        return []
    store_bytes, cache_bytes = estimate(plan, ctx)
    result = needs(ctx.store.root, store_bytes, ctx.cache_dir, cache_bytes)
    for need in result:
        if not need.fits:
            raise DiskSpaceError(
                f"not enough disk space for this build: it needs about "
                f"{format_size(need.needed)} on the filesystem of {need.path}, which has "
                f"{format_size(need.free)} free",
                path=str(need.path),
                needed=need.needed,
                free=need.free,
                hint="free some space (`layerforge gc` removes images no tag reaches), or "
                "point --store / --cache-dir at a larger disk",
            )
    return result
