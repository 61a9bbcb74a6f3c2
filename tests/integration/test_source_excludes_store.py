"""``source = "."`` and ``context = "."`` (the project directory itself) never take in the
store (``.layerforge/``, or the ``--store`` and ``--cache-dir`` directories when they lie inside
the project): no image grows with every build, and no key changes because a build wrote to
the store. A run step sees in ``/context`` exactly the files the key covers."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from layerforge.oci.layout import Store
from tests.conftest import require_tools
from tests.integration.hostroot import copy_programs
from tests.integration.tiny import cli, cli_json, manifest_of, tiny_project

pytestmark = pytest.mark.integration


def layer_members(store: Path, ref: str) -> set[str]:
    opened = Store.open(store, create=False)
    names: set[str] = set()
    for layer in manifest_of(store, ref)["layers"]:
        with tarfile.open(opened.blob_path(layer["digest"])) as tar:
            names |= {m.name.rstrip("/") for m in tar.getmembers()}
    return names


def host_programs(root: Path, *programs: str) -> None:
    """Copy host ``programs`` and the shared libraries they load into ``root``."""
    require_tools("bwrap", *programs)  # bwrap: the run steps of these roots (ldd: libc-bin)
    copy_programs(root, programs, bindir="bin")


def build(project: Path, cache: Path, *extra: str) -> dict[str, str]:
    """node -> status of a ``build --json``."""
    args = ("-f", str(project), "--cache-dir", str(cache), *extra)
    code, _, err = cli("lock", *args)
    assert code == 0, err
    doc = cli_json("build", "--no-verify", *args)
    return {img["node"]: img["status"] for img in doc["images"]}


def test_source_dot_ships_neither_the_store_nor_an_inner_cache(tmp_path: Path) -> None:
    project = tiny_project(tmp_path / "p")
    text = (project / "layerforge.toml").read_text().replace('source = "svc"', 'source = "."')
    (project / "layerforge.toml").write_text(text)
    cache, other = project / "cache", project / "other-store"
    first = build(project, cache)
    assert first == {"base": "built", "svc": "built"}
    members = layer_members(project / ".layerforge", "svc:latest")
    assert any(m.endswith("svc/svc/__main__.py") for m in members), sorted(members)
    assert any(m.endswith("layerforge.toml") for m in members)
    leaked = sorted(m for m in members if ".layerforge" in m or "/cache" in m)
    assert leaked == []
    # the build filled the store and the cache: the key is the same, nothing to build
    assert build(project, cache) == {"base": "cached", "svc": "cached"}
    # another store inside the project is not shipped either
    build(project, cache, "--store", str(other))
    members = layer_members(other, "svc:latest")
    assert sorted(m for m in members if "other-store" in m or ".layerforge" in m) == []


def test_context_dot_shows_run_steps_only_the_files_the_key_covers(tmp_path: Path) -> None:
    project = tiny_project(tmp_path / "p")
    host_programs(project / "os", "sh", "cp")
    (project / ".dockerignore").write_text("secret.txt\n")
    (project / "secret.txt").write_text("not in the context\n")
    text = (project / "layerforge.toml").read_text()
    text = text.replace(
        'from = "rootfs:os"\n',
        'from = "rootfs:os"\ncontext = "."\nnetwork = false\nrun = ["cp -a /context /ctx"]\n',
    )
    (project / "layerforge.toml").write_text(text)
    cache = tmp_path / "cache"
    assert build(project, cache) == {"base": "built", "svc": "built"}
    members = {m.removeprefix("./") for m in layer_members(project / ".layerforge", "base:latest")}
    copied = {m for m in members if m.startswith("ctx/")}
    assert "ctx/layerforge.toml" in copied and "ctx/svc/svc/__main__.py" in copied
    assert sorted(m for m in copied if "secret" in m) == []  # .dockerignore'd: not in the key
    assert sorted(m for m in copied if ".layerforge" in m) == []
    assert build(project, cache) == {"base": "cached", "svc": "cached"}
