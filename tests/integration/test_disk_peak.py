"""Issue 13 item 3: a build measures its peak disk use and prints it, and the disk preflight
counts what the sandbox unpacks (layer trees, a system step's copy) and the wheels uv
downloads, refusing before anything is written when those do not fit."""

from __future__ import annotations

import json
import shutil
from collections import namedtuple
from pathlib import Path

import pytest

from layerforge.builder import disk
from layerforge.builder.context import BuildContext
from layerforge.events import NullReporter
from layerforge.lock import lockfile
from layerforge.manifest import load
from layerforge.oci.layout import Store
from layerforge.plan import make_plan, scan_sources
from tests.conftest import require_tools
from tests.integration.hostroot import copy_programs
from tests.integration.tiny import cli, tiny_project

pytestmark = pytest.mark.integration

Usage = namedtuple("Usage", "total used free")


def test_build_reports_peak_disk(tmp_path: Path) -> None:
    require_tools("bwrap")
    project = tiny_project(tmp_path / "p")
    (project / "os/usr/share").mkdir(parents=True)
    (project / "os/usr/share/data.bin").write_bytes(bytes(range(256)) * 4096)  # 1 MiB
    (project / "os/bin").symlink_to("usr/bin")
    copy_programs(project / "os", ("sh",))  # the service's command check runs sh
    (project / "os/usr/bin/python3.11").chmod(0o755)
    cache = tmp_path / "cache"
    args = ("-f", str(project), "--cache-dir", str(cache))
    assert cli("lock", *args)[0] == 0
    code, out, err = cli("build", *args, "--json")
    assert code == 0, err
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    (figures,) = [e["data"] for e in events if e["task"] == "disk"]
    assert figures["scope"] == "filesystem"
    assert figures["unpacked_bytes"] >= 1 << 20  # the root layer's tree, at least
    assert figures["store_bytes"] > 0
    holds = {name for fs in figures["filesystems"] for name in fs["holds"]}
    assert holds == {"store", "cache", "uv cache"}
    assert all(fs["peak_used"] >= fs["start_used"] for fs in figures["filesystems"])
    (project / "svc/svc/__main__.py").write_text("print('changed')\n")
    code, out, err = cli("build", *args)
    assert code == 0, err
    assert "peak disk: +" in " ".join(err.split() + out.split())


def test_preflight_counts_unpacking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Free space between what the store and the staging need and what the verify's layer
    trees add: the build is refused before it writes a blob, naming the layers to unpack."""
    project = tiny_project(tmp_path / "p")
    (project / "os/usr/share").mkdir(parents=True)
    (project / "os/usr/share/data.bin").write_bytes(bytes(range(256)) * 4096)
    cache = tmp_path / "cache"
    args = ("-f", str(project), "--cache-dir", str(cache))
    assert cli("lock", *args)[0] == 0
    manifest = load(project / "layerforge.toml")
    lock = lockfile.read(project / "layerforge.lock")
    trees = scan_sources(manifest)
    store = Store.open(project / ".layerforge")
    plan = make_plan(manifest, lock, trees, {}, {})
    ctx = BuildContext(manifest, lock, store, cache, NullReporter(), trees)
    store_bytes, cache_bytes = disk.estimate(plan, ctx)
    unpacking = disk.unpack_estimate(plan, ctx)
    assert unpacking.trees >= 1 << 20
    free = store_bytes + cache_bytes + disk.download_estimate(plan, ctx) + unpacking.trees // 2
    blobs = sorted(p.name for p in (project / ".layerforge/blobs/sha256").iterdir())
    monkeypatch.setattr(shutil, "disk_usage", lambda _path: Usage(1 << 40, (1 << 40) - free, free))
    code, _, err = cli("build", *args)
    assert code == 1, err
    message = " ".join(err.split())
    assert "not enough disk space" in message and "layers to unpack" in message, message
    assert sorted(p.name for p in (project / ".layerforge/blobs/sha256").iterdir()) == blobs
