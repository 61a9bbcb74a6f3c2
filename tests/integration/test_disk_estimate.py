"""The disk preflight's estimate against what a real build of the example fleet writes.

The estimate (``builder/disk.py``) is a model: factors over wheel sizes, guesses for OS
layers and a debootstrap root. Here it is compared with the disk space a cold build really
uses, measured as ``du`` does (allocated blocks, hard links once): the store after `lock`
and after `build` into a fresh store, the debootstrap root filesystem in the cache, and the
staging a build fills with a node's installed distributions before writing their layers (its
own `pip` layers, unpacked by `tar` into a directory). The estimate must cover each (the
preflight refuses rather than fail halfway) without crying wolf (at most ``SLACK`` times the
real figure).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from layerforge.builder import disk
from layerforge.builder.context import BuildContext
from layerforge.cli import main
from layerforge.events import NullReporter
from layerforge.lock import lockfile
from layerforge.manifest import load
from layerforge.oci.layout import Store
from layerforge.plan import make_plan, scan_sources
from layerforge.sources.debootstrap import debootstrap_key, locked_debootstrap_key
from tests.conftest import EXAMPLE, require_tools
from tests.integration.conftest import build_fleet

pytestmark = pytest.mark.integration

JOBS = 2  # the build's default, and what the estimate assumes runs at once
SLACK = 3.0


def disk_usage(root: Path) -> int:
    """Bytes allocated to everything under ``root``, as ``du`` counts them."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for directory, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            st = os.lstat(os.path.join(directory, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def oci_doc(store: Path, digest: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads((store / "blobs/sha256" / digest[7:]).read_bytes())
    return value


def manifest_of(store: Path, ref: str) -> dict[str, Any]:
    index = json.loads((store / "index.json").read_text())
    (entry,) = [m for m in index["manifests"]
                if m["annotations"]["org.opencontainers.image.ref.name"] == ref]  # fmt: skip
    return oci_doc(store, entry["digest"])


def staging_usage(store: Path, node: str, parent: str | None, scratch: Path) -> int:
    """The disk space of the distributions ``node`` installs itself: its own `pip` layers
    (found through the manifest and config blobs), unpacked into ``scratch`` and measured."""
    mine = manifest_of(store, f"{node}:latest")
    below = len(manifest_of(store, f"{parent}:latest")["layers"]) if parent else 0
    history = [h for h in oci_doc(store, mine["config"]["digest"])["history"]
               if not h.get("empty_layer")]  # fmt: skip
    assert len(history) == len(mine["layers"])
    scratch.mkdir()
    for layer, step in list(zip(mine["layers"], history, strict=True))[below:]:
        if " pip " in step.get("created_by", ""):
            blob = store / "blobs/sha256" / layer["digest"][7:]
            subprocess.run(["tar", "-xzf", str(blob), "-C", str(scratch)], check=True)
    try:
        return disk_usage(scratch)
    finally:
        shutil.rmtree(scratch)


def within(estimate: int, real: int, what: str) -> None:
    assert real > 0, what
    assert real <= estimate <= SLACK * real, (
        f"{what}: estimated {estimate:,} bytes, a real build wrote {real:,} "
        f"({estimate / real:.2f}x; must be between 1x and {SLACK}x)"
    )


def test_the_estimate_covers_a_real_cold_build(tmp_path: Path, shared_cache: Path) -> None:
    require_tools("debootstrap", "bwrap", "tar")
    project_dir = tmp_path / "fleet"
    shutil.copytree(EXAMPLE, project_dir, ignore=shutil.ignore_patterns(".layerforge"))
    project = load(project_dir / "layerforge.toml")
    lock = lockfile.read(project_dir / "layerforge.lock")
    trees = scan_sources(project)
    plan = make_plan(project, lock, trees, {}, {})
    assert {s.node for s in plan.to_build} == set(project.nodes)

    def estimate(store: Path, cache: Path) -> tuple[int, int]:
        ctx = BuildContext(
            project, lock, Store.open(store), cache, NullReporter(), trees, jobs=JOBS
        )
        return disk.estimate(plan, ctx)

    # cold: no store, no cache (the debootstrap root and the OS layers are guesses)
    cold_store, cold_cache = estimate(tmp_path / "empty-store", tmp_path / "empty-cache")
    # `lock` materializes the OS source: its layers go into the store, its root into the cache
    assert main(["lock", "-f", str(project_dir), "--cache-dir", str(shared_cache)]) == 0
    store = project_dir / ".layerforge"
    os_layers_real = disk_usage(store)
    build_store, build_cache = estimate(store, shared_cache)  # what `build` is left to do
    build_fleet(project_dir, shared_cache, "--no-verify", "--jobs", str(JOBS))
    build_real = disk_usage(store) - os_layers_real

    (source,) = [n.os_source for n in project.nodes.values() if n.os_source is not None]
    assert source is not None
    (root,) = [n for n, node in project.nodes.items() if node.os_source is not None]
    pin = lock.nodes[root].source
    rows = pin.os if pin is not None else ()  # lock v2: the root made from the locked .debs
    key = locked_debootstrap_key(source, rows) if rows else debootstrap_key(source)
    rootfs_real = disk_usage(shared_cache / "debootstrap" / key / "rootfs")
    # staging holds one node's installed distributions at a time per job
    installed = sorted(
        (staging_usage(store, name, node.parent, tmp_path / f"stage-{name}")
         for name, node in project.nodes.items()),
        reverse=True,
    )  # fmt: skip
    staging_real = sum(installed[:JOBS])

    within(cold_store - build_store, os_layers_real, "store: the OS layers")
    within(build_store, build_real, "store: dependency and application layers")
    within(cold_store, os_layers_real + build_real, "store: all")
    within(cold_cache - build_cache, rootfs_real, "cache: the debootstrap root filesystem")
    within(build_cache, staging_real, "cache: staging of the installed distributions")
    within(cold_cache, rootfs_real + staging_real, "cache: all")
