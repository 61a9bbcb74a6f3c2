"""Issue 13 item 5: a version bump (or a new --revision) is a relabel: the layers, the
layer cache and verify are untouched; the store gains a config and a manifest per node, and a
relabelled image is the image a fresh build of the new version writes, byte for byte."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from layerforge.oci.layout import Store
from layerforge.report.timings import STEP_NAMES
from tests.integration.registry_server import Registry
from tests.integration.tiny import cli, cli_json, local_digests, manifest_of, tiny_project


def _blobs(store: Path) -> set[str]:
    return {p.name for p in (store / "blobs/sha256").iterdir()}


def _kinds(store: Path, names: set[str]) -> set[str]:
    opened = Store.open(store, create=False)
    kinds = set()
    for name in names:
        doc = opened.read_json("sha256:" + name)
        kinds.add("manifest" if "layers" in doc else "config" if "rootfs" in doc else "?")
    return kinds


def _bump(project: Path, old: str, new: str) -> None:
    toml = project / "layerforge.toml"
    toml.write_text(toml.read_text().replace(f'version = "{old}"', f'version = "{new}"'))


def _built(directory: Path, cache: Path, version: str) -> Path:
    project = tiny_project(directory, project=f'version = "{version}"')
    assert cli("lock", "-f", str(project), "--cache-dir", str(cache))[0] == 0
    code, _, err = cli("build", "--no-verify", "-f", str(project), "--cache-dir", str(cache))
    assert code == 0, err
    return project


def test_version_bump_relabels_without_layers(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    project = _built(tmp_path / "p", cache, "1.0.0")
    store = project / ".layerforge"
    before = _blobs(store)
    _bump(project, "1.0.0", "1.0.1")
    plan = cli_json("plan", "-f", str(project), "--cache-dir", str(cache))
    assert {s["node"]: s["status"] for s in plan["steps"]} == {
        "base": "relabel",
        "svc": "relabel",
    }
    assert plan["steps"][0]["reasons"] == ["version 1.0.0 -> 1.0.1 (labels only)"]
    code, out, _ = cli("plan", "-f", str(project), "--cache-dir", str(cache))
    assert code == 0 and "relabel" in out and "build" not in out.replace("labels only", "")
    # verify is on: the stand-in interpreter would fail it, were it run
    doc = cli_json("build", "-f", str(project), "--cache-dir", str(cache))
    assert {r["node"]: r["status"] for r in doc["images"]} == {
        "base": "relabelled",
        "svc": "relabelled",
    }
    steps = set(doc["timings"]["steps"])
    assert not steps & {STEP_NAMES.get(k, k) for k in ("layer", "verify", "install")}, steps
    new = _blobs(store) - before
    assert len(new) == 4 and _kinds(store, new) == {"config", "manifest"}
    for node in ("base", "svc"):
        manifest: dict[str, Any] = manifest_of(store, f"{node}:latest")
        assert manifest["annotations"]["org.opencontainers.image.version"] == "1.0.1"
    svc = manifest_of(store, "svc:latest")["annotations"]
    assert svc["org.opencontainers.image.base.digest"] == local_digests(store)["base"]
    # same key tag, moved; the next plan has nothing to do
    again = cli_json("plan", "-f", str(project), "--cache-dir", str(cache))
    assert {s["status"] for s in again["steps"]} == {"cached"}
    # a fresh build of 1.0.1 writes the same images
    fresh = _built(tmp_path / "fresh", tmp_path / "cache2", "1.0.1")
    assert local_digests(fresh / ".layerforge") == local_digests(store)


def test_a_new_revision_relabels(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    project = _built(tmp_path / "p", cache, "1.0.0")
    args = ("-f", str(project), "--cache-dir", str(cache), "--revision", "abc123")
    plan = cli_json("plan", *args)
    assert {s["status"] for s in plan["steps"]} == {"relabel"}
    doc = cli_json("build", "--no-verify", *args)
    assert {r["status"] for r in doc["images"]} == {"relabelled"}
    annotations = manifest_of(project / ".layerforge", "svc:latest")["annotations"]
    assert annotations["org.opencontainers.image.revision"] == "abc123"


def test_remote_hit_with_old_labels_is_relabelled(registry: Registry, tmp_path: Path) -> None:
    """Pushed at 1.0.0; a fresh machine at 1.0.1 finds every image by its content key, fetches
    the manifests and configs, relabels them, and its push uploads just the new configs."""
    cache = tmp_path / "cache"
    project = tiny_project(tmp_path / "p", f"{registry.host}/bump", project='version = "1.0.0"')
    assert cli("lock", "-f", str(project), "--cache-dir", str(cache))[0] == 0
    args = ("-f", str(project), "--cache-dir", str(cache))
    built = cli_json("build", "--no-verify", "--push", *args)
    keys = {i["node"]: i["key"] for i in built["images"]}
    fresh = tmp_path / "fresh"  # another machine: the project without its store
    shutil.copytree(project, fresh, ignore=shutil.ignore_patterns(".layerforge"))
    _bump(fresh, "1.0.0", "1.0.1")
    args = ("-f", str(fresh), "--cache-dir", str(tmp_path / "cache2"))
    plan = cli_json("plan", *args)
    assert {s["node"]: (s["status"], s["key"]) for s in plan["steps"]} == {
        n: ("remote", k) for n, k in keys.items()
    }
    doc = cli_json("build", "--no-verify", *args)
    assert {r["node"]: r["status"] for r in doc["images"]} == {"base": "remote", "svc": "remote"}
    store = fresh / ".layerforge"
    assert _kinds(store, _blobs(store)) == {"config", "manifest"}  # no layer came down
    for node in ("base", "svc"):
        annotations = manifest_of(store, f"{node}:latest")["annotations"]
        assert annotations["org.opencontainers.image.version"] == "1.0.1"
    assert {s["status"] for s in cli_json("plan", *args)["steps"]} == {"cached"}
    # the same images a bump of the first machine's store relabels to
    _bump(tmp_path / "p", "1.0.0", "1.0.1")
    code, _, err = cli("build", "--no-verify", "-f", str(project), "--cache-dir", str(cache))
    assert code == 0, err
    assert local_digests(store) == local_digests(project / ".layerforge")
    pushed = cli_json("push", *args)
    assert [i["blobs"]["uploaded"] for i in pushed["images"]] == [1, 1]  # the configs


def test_version_bump_with_labels_off_writes_nothing(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    project = tiny_project(tmp_path / "p", project='version = "1.0.0"\nversion_labels = false')
    args = ("-f", str(project), "--cache-dir", str(cache))
    assert cli("lock", *args)[0] == 0
    assert cli("build", "--no-verify", *args)[0] == 0
    store = project / ".layerforge"
    annotations = manifest_of(store, "svc:latest")["annotations"]
    assert "org.opencontainers.image.version" not in annotations
    before = {p: p.read_bytes() for p in store.rglob("*") if p.is_file()}
    _bump(project, "1.0.0", "1.0.1")
    assert {s["status"] for s in cli_json("plan", *args)["steps"]} == {"cached"}
    doc = cli_json("build", *args, "--revision", "abc")  # verify on: it must not run
    assert {r["status"] for r in doc["images"]} == {"cached"}
    after = {p: p.read_bytes() for p in store.rglob("*") if p.is_file()}
    assert after == before
