"""gc cleans a real cache directory: what verify and build unpacked for images gc removed
goes, the rest stays, and verify still works afterwards (nothing half-deleted)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from layerforge import cachedir
from layerforge.cli import main
from layerforge.oci.layout import Store
from tests.conftest import require_tools

pytestmark = pytest.mark.integration

OLD = 1000.0


def cli(*args: str) -> tuple[int, str]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(list(args))
    return code, buf.getvalue()


def _gc(project: Path, cache: Path, *extra: str) -> dict[str, Any]:
    code, out = cli("gc", "-f", str(project), "--cache-dir", str(cache), "--json", *extra)
    assert code == 0, out
    doc: dict[str, Any] = json.loads(out)
    return doc


def _app_layer(store: Store, ref: str) -> str:
    manifest = store.read_json(store.tags()[ref].digest)
    return str(manifest["layers"][-1]["digest"]).split(":", 1)[1][:32]


def test_gc_removes_the_cache_entries_of_removed_images(fleet: Path, tmp_path: Path) -> None:
    require_tools("bwrap")
    project = tmp_path / "copy"
    shutil.copytree(fleet, project, ignore=shutil.ignore_patterns(".layerforge"))
    shutil.copytree(fleet / ".layerforge", project / ".layerforge", copy_function=os.link)
    cache = tmp_path / "cache"  # private: gc must never clean the shared cache in tests
    args = ["-f", str(project), "--cache-dir", str(cache)]
    assert cli("verify", "api", *args)[0] == 0
    store = Store.open(project / ".layerforge", create=False)
    assert [k.store for k in cachedir.known_stores(cache)] == [store.root.resolve()]
    old_app = _app_layer(store, "api:latest")
    (project / "services/api/api/extra.py").write_text("X = 1\n")
    assert cli("build", "api", *args)[0] == 0  # a new app layer, verified: a new layers/ entry
    new_app = _app_layer(store, "api:latest")
    assert {old_app, new_app} <= {p.name for p in (cache / "layers").iterdir()}
    chains = sorted(p.name for p in (cache / "roots").iterdir())
    for entry in [*(cache / "layers").iterdir(), *(cache / "roots").iterdir()]:
        os.utime(entry, (OLD, OLD))  # as if made long ago
    crashed = cache / "stage" / "api-crashed"
    (crashed / "prefix").mkdir(parents=True)
    for path in (crashed / "prefix", crashed):
        os.utime(path, (OLD, OLD))
    running = cache / "stage" / "system-running"
    running.mkdir()

    dry = _gc(project, cache, "--keep", "1", "--dry-run")
    assert (cache / "layers" / old_app).is_dir() and crashed.is_dir()
    doc = _gc(project, cache, "--keep", "1")
    assert doc["caches"]["removed"] == dry["caches"]["removed"]
    removed = {Path(e["path"]) for e in doc["caches"]["removed"]}
    assert removed == {cache / "layers" / old_app, crashed}
    assert doc["caches"]["freed"] > 0 and doc["caches"]["skipped"] is None
    assert doc["caches"]["stores"] == [str(store.root.resolve())]
    assert doc["freed_total"] == doc["freed"] + doc["caches"]["freed"]
    assert set(doc["caches"]["by_area"]) == {"layers", "stage"}
    assert running.is_dir() and (cache / "layers" / new_app).is_dir()
    assert sorted(p.name for p in (cache / "roots").iterdir()) == chains
    assert not list(cache.rglob(".tmp-gc-*"))
    assert cli("verify", "api", "cpu", *args)[0] == 0  # the kept entries are whole
    assert _gc(project, cache, "--keep", "1")["caches"]["removed"] == []
