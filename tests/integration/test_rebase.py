"""Item 4 of issue 16: `layerforge rebase` puts a built fleet on a changed OS and keeps every
Python, runtime and app layer by digest.

The fleet: a root base from ``rootfs:os``, a hardlinked copy of the shared cache's Debian
root (so the verify statements run the image's real Python in the sandbox), with a wheel
made by the test, and three services on it. The OS change is a file added to the root, taken
into the lock by ``lock --upgrade``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from layerforge.oci.layout import Store
from tests.conftest import require_tools
from tests.integration.registry_server import Registry
from tests.integration.tiny import cli, cli_json
from tests.wheelkit import make_wheel

pytestmark = pytest.mark.integration

DEBIAN_ROOT = "debootstrap/b03be4d28dcb61c96feb7eeb/rootfs"  # bookworm minbase + python3
SERVICES = ("a", "b", "c")
HEAD = """
[project]
name = "rebase"
python = "3.11"
find_links = ["wheels"]
{registry}
[bases.base]
from = "rootfs:os"
requirements = ["{requirement}"]
verify = ["import lfreb"]
"""
SERVICE = """
[services.{name}]
base = "base"
source = "{name}"
command = ["python", "-m", "{name}"]
verify = ["import {name}, lfreb"]
"""


def debian_root(shared_cache: Path, target: Path) -> None:
    source = shared_cache / DEBIAN_ROOT
    if not source.is_dir():  # the cache is warm on this machine; say so clearly if not
        pytest.fail(f"{source} is missing: run tests/integration/test_sbom_image.py first")
    shutil.copytree(source, target, symlinks=True, copy_function=os.link)


def fleet(
    root: Path, shared_cache: Path, *, requirement: str = "lfreb==1.0", registry: str = ""
) -> Path:
    if not (root / "os").exists():
        debian_root(shared_cache, root / "os")
        make_wheel(root / "wheels", "lfreb", "1.0")
        make_wheel(root / "wheels", "lfreb", "1.1")
        for name in SERVICES:
            (root / name / name).mkdir(parents=True)
            (root / name / name / "__init__.py").write_text(f"NAME = {name!r}\n")
    line = f'registry = "{registry}"\n' if registry else ""
    text = HEAD.format(registry=line, requirement=requirement)
    text += "".join(SERVICE.format(name=n) for n in SERVICES)
    (root / "layerforge.toml").write_text(text)
    return root


def images(store: Path) -> dict[str, dict[str, Any]]:
    opened = Store.open(store, create=False)
    out: dict[str, dict[str, Any]] = {}
    for ref, desc in opened.tags().items():
        if ref.endswith(":latest"):
            out[ref.split(":")[0]] = {"digest": desc.digest, **opened.read_json(desc.digest)}
    return out


def patch_os(root: Path) -> None:
    """An OS change: a new file (never a write into a hardlinked one)."""
    (root / "os/etc/lf-security-patch").write_text("openssl 3.0.22\n")


def test_rebase_keeps_python_layers(tmp_path: Path, shared_cache: Path) -> None:
    require_tools("bwrap")
    root = fleet(tmp_path / "p", shared_cache)
    args = ("-f", str(root), "--cache-dir", str(tmp_path / "cache"))
    assert cli("lock", *args)[0] == 0
    cli_json("build", *args)
    store = Store.open(root / ".layerforge", create=False)
    before, blobs_before = images(root / ".layerforge"), store.blobs()
    lock_before = (root / "layerforge.lock").read_text()

    patch_os(root)
    assert cli("lock", "--upgrade", *args)[0] == 0
    lock_after = (root / "layerforge.lock").read_text()
    assert lock_after != lock_before and "lfreb" in lock_after
    plain = cli_json("plan", *args)
    assert {s["status"] for s in plain["steps"]} == {"build"}
    planned = cli_json("plan", "--rebase", *args)
    assert {s["node"]: s["status"] for s in planned["steps"]} == dict.fromkeys(
        ["base", *SERVICES], "rebase"
    )
    assert "OS source changed" in planned["steps"][0]["reasons"]

    done = cli_json("rebase", *args)  # verify runs: the images' own Python imports lfreb
    assert {i["node"]: i["status"] for i in done["images"]} == dict.fromkeys(
        ["base", *SERVICES], "rebased"
    )
    after = images(root / ".layerforge")
    new_layers: set[str] = set()
    for node, old in before.items():
        new = after[node]
        assert new["digest"] != old["digest"]
        assert new["layers"][0]["digest"] != old["layers"][0]["digest"]  # the OS layer
        assert new["layers"][1:] == old["layers"][1:]  # venv, wheels, app: the same blobs
        new_layers.add(new["layers"][0]["digest"])
    assert len(new_layers) == 1
    configs = {a["config"]["digest"] for a in after.values()}
    manifests = {a["digest"] for a in after.values()}
    tags = store.tags()
    sboms = {tags[f"{n}:sha256-{a['digest'][7:]}"].digest for n, a in after.items()}
    sbom_blobs = {
        str(x["digest"]) for d in sboms for x in store.read_json(d)["layers"]
    }  # the SBOM documents (the empty config was there before)
    assert store.blobs() - blobs_before == new_layers | configs | manifests | sboms | sbom_blobs

    # the same as a full build of the new lock in a fresh store
    fresh = tmp_path / "fresh"
    shutil.copytree(  # hardlinks: the root has FIFOs, which a copy would block on
        root,
        fresh,
        symlinks=True,
        ignore=shutil.ignore_patterns(".layerforge"),
        copy_function=os.link,
    )
    cli_json("build", "--no-verify", "-f", str(fresh), "--cache-dir", str(tmp_path / "c2"))
    assert {n: i["digest"] for n, i in images(fresh / ".layerforge").items()} == {
        n: i["digest"] for n, i in after.items()
    }


def test_rebase_refuses_interpreter_change_and_other_changes(
    tmp_path: Path, shared_cache: Path
) -> None:
    root = fleet(tmp_path / "p", shared_cache)
    args = ("-f", str(root), "--cache-dir", str(tmp_path / "cache"))
    assert cli("lock", *args)[0] == 0
    cli_json("build", "--no-verify", *args)
    tags = Store.open(root / ".layerforge", create=False).tags()

    fleet(root, shared_cache, requirement="lfreb==1.1")  # not an OS change
    assert cli("lock", *args)[0] == 0
    code, _, err = cli("rebase", *args)
    assert code == 2, err
    assert "base (requirements changed: lfreb 1.0 -> 1.1)" in err
    assert "layerforge build" in err

    fleet(root, shared_cache)
    (root / "os/usr/local/bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(root / "os/usr/bin/python3.11", root / "os/usr/local/bin/python3.11")
    assert cli("lock", "--upgrade", *args)[0] == 0
    assert json.loads(json.dumps(cli_json("plan", "--rebase", *args)))["steps"][0]["status"] == (
        "rebase"
    )
    code, _, err = cli("rebase", *args)
    assert code == 1, err
    assert "the interpreter changed (/usr/bin/python3.11 3.11.2 -> /usr/local/bin/python3.11" in err
    assert "run `layerforge build`" in err
    assert Store.open(root / ".layerforge", create=False).tags() == tags  # nothing tagged


def test_rebase_push_uploads_only_new_blobs(
    registry: Registry, tmp_path: Path, shared_cache: Path
) -> None:
    root = fleet(tmp_path / "p", shared_cache, registry=f"{registry.host}/rb")
    args = ("-f", str(root), "--cache-dir", str(tmp_path / "cache"))
    assert cli("lock", *args)[0] == 0
    cli_json("build", "--no-verify", "--push", *args)
    before = images(root / ".layerforge")
    patch_os(root)
    assert cli("lock", "--upgrade", *args)[0] == 0
    done = cli_json("rebase", "--no-verify", "--push", *args)
    pushed = {i["repository"]: i for i in done["push"]["images"]}
    os_layer = before["base"]["layers"][0]["size"]
    for node in ("base", *SERVICES):
        info = pushed[f"rb/{node}"]
        # base: the new OS layer and its config; a service: its config (the OS layer is mounted
        # from rb/base); every Python layer is already there
        assert info["blobs"]["uploaded"] == (2 if node == "base" else 1), (node, info)
        assert info["blobs"]["present"] == len(before[node]["layers"]) - 1
    assert pushed["rb/base"]["uploaded_bytes"] < os_layer * 2
