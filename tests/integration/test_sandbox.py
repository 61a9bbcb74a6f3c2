"""System layers, run steps and verification, on the example fleet built for real.

The fleet's cpu base installs apt packages and runs steps in bubblewrap: it compiles
libfastmath from source and a CPython extension linked against it, purges the compiler and
deletes the docs of lower layers. Read back with umoci; extra nodes on top of the fleet's
store check failures (a failing step, a failing verify) and ``network = false``.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from layerforge.cli import main
from layerforge.oci.layout import Store
from tests.conftest import require_tools
from tests.integration.tools import run, skopeo_raw

pytestmark = pytest.mark.integration

EXTRA_NODES = """

[bases.offline]
from = "cpu"
network = false
run = ["test $(grep -c : /proc/net/dev) -eq 1 && echo isolated > /etc/offline-proof"]
verify = ["sh: grep -q isolated /etc/offline-proof"]

[bases.failing]
from = "cpu"
run = ["echo compiling the world; echo 'fatal: missing.h' >&2; exit 3"]

[services.broken]
base = "cpu"
source = "services/api"
command = ["python", "-m", "api"]
verify = ["import api.main", "import not_installed_anywhere"]
"""


@pytest.fixture(scope="module")
def extended(fleet: Path, tmp_path_factory: pytest.TempPathFactory, shared_cache: Path) -> Path:
    """A copy of the fleet's project with three more nodes, sharing the fleet's store."""
    directory = tmp_path_factory.mktemp("extended") / "fleet"
    shutil.copytree(fleet, directory, ignore=shutil.ignore_patterns(".layerforge", "build.json"))
    manifest = directory / "layerforge.toml"
    manifest.write_text(manifest.read_text() + EXTRA_NODES)
    assert main(["lock", "-f", str(directory), "--cache-dir", str(shared_cache)]) == 0
    return directory


def build(directory: Path, store: Path, cache: Path, *args: str) -> int:
    return main(
        ["build", "-f", str(directory), "--store", str(store), "--cache-dir", str(cache), *args]
    )


def test_system_layer_is_one_layer_between_venv_and_dependencies(fleet: Path) -> None:
    config = skopeo_raw(fleet / ".layerforge", "cpu:latest", config=True)
    created = [h["created_by"] for h in config["history"] if not h.get("empty_layer")]
    system = [i for i, c in enumerate(created) if c.startswith("layerforge: system")]
    assert len(system) == 1
    assert "venv" in created[system[0] - 1]
    # then cpu's user layer (user = "app", made from what the system layer left), the wheels
    assert created[system[0] + 1] == "layerforge: user app (10001:10001)"
    assert created[system[0] + 2].startswith("layerforge: pip")


def test_run_steps_reach_the_image_and_deletions_are_whiteouts(
    fleet: Path,
    tmp_path: Path,
) -> None:
    require_tools("umoci")
    store = fleet / ".layerforge"
    os_layer = skopeo_raw(store, "cpu:latest")["layers"][0]["digest"]
    with tarfile.open(Store.open(store, create=False).blob_path(os_layer)) as tar:
        lower = set(tar.getnames())
    assert "usr/share/doc/base-files/copyright" in lower  # present in a lower layer...
    bundle = tmp_path / "bundle"
    run(["umoci", "unpack", "--image", f"{store}:api:latest", str(bundle)])
    rootfs = bundle / "rootfs"
    assert not (rootfs / "usr/share/doc/base-files").exists()  # ...deleted by a run step
    assert (rootfs / "usr/local/lib/libfastmath.so.1").is_file()
    assert list((rootfs / "opt/venv/lib/python3.11/site-packages").glob("_fastmath*.so"))
    assert (rootfs / "usr/lib/x86_64-linux-gnu/libgomp.so.1").exists()  # the system package
    assert not (rootfs / "usr/bin/gcc").exists()  # build tools purged in the same layer
    assert not [p for p in (rootfs / "var/lib/apt/lists").iterdir() if p.name != "lock"]
    assert not list((rootfs / "var/cache/apt/archives").glob("*.deb"))
    assert not list(rootfs.glob("usr/local/**/__pycache__"))


def test_verify_verb_runs_every_check_in_the_images(
    fleet: Path,
    shared_cache: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    require_tools("bwrap")
    capsys.readouterr()
    args = ["verify", "-f", str(fleet), "--cache-dir", str(shared_cache), "--json", "cpu", "api"]
    assert main(args) == 0
    checks = json.loads(capsys.readouterr().out)["checks"]
    labels = {(c["node"], c["check"]) for c in checks}
    assert ("cpu", "import _fastmath; assert _fastmath.dot([1, 2], [3, 4]) == 11.0") in labels
    assert ("api", "import api.main") in labels
    assert ("api", "command: uvicorn") in labels
    assert all(c["ok"] for c in checks)


def test_network_false_runs_without_network(
    fleet: Path,
    extended: Path,
    shared_cache: Path,
) -> None:
    require_tools("bwrap")
    assert build(extended, fleet / ".layerforge", shared_cache, "offline") == 0


def test_failing_run_step_shows_command_exit_code_and_output_and_stores_nothing(
    fleet: Path,
    extended: Path,
    shared_cache: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    require_tools("bwrap")
    store = Store.open(fleet / ".layerforge", create=False)
    before = store.blobs()
    capsys.readouterr()
    assert build(extended, fleet / ".layerforge", shared_cache, "failing") == 1
    err = capsys.readouterr().err
    assert "bases.failing.run[0] failed with exit code 3" in err
    assert "echo compiling the world" in err  # the command
    assert "compiling the world" in err.split("--- output")[1]
    assert "fatal: missing.h" in err
    assert store.blobs() == before
    assert not [ref for ref in store.tags() if ref.startswith("failing:")]


def test_failing_verify_fails_the_build_with_statement_and_exception(
    fleet: Path,
    extended: Path,
    shared_cache: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    require_tools("bwrap")
    capsys.readouterr()
    assert build(extended, fleet / ".layerforge", shared_cache, "broken") == 1
    err = " ".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert "services.broken.verify: 'import not_installed_anywhere' failed" in err
    assert "ModuleNotFoundError: No module named 'not_installed_anywhere'" in err
    store = Store.open(fleet / ".layerforge", create=False)
    assert not [ref for ref in store.tags() if ref.startswith("broken:")]
    assert build(extended, fleet / ".layerforge", shared_cache, "--no-verify", "broken") == 0


def test_compile_bytecode_puts_pyc_of_the_image_python_in_the_dependency_layer(
    fleet: Path,
) -> None:
    """gpu sets compile_bytecode = true (its verify checks the magic number in the image)."""
    store = Store.open(fleet / ".layerforge", create=False)
    layers = skopeo_raw(fleet / ".layerforge", "gpu:latest")["layers"]
    with tarfile.open(store.blob_path(layers[-1]["digest"])) as tar:
        names = set(tar.getnames())
        site = "opt/venv/lib/python3.11/site-packages"
        assert f"{site}/safetensors/__pycache__/__init__.cpython-311.pyc" in names
        record = next(
            n for n in names if n.startswith(f"{site}/safetensors-") and n.endswith("RECORD")
        )
        member = tar.extractfile(record)
        assert member is not None
        assert "safetensors/__pycache__/__init__.cpython-311.pyc,sha256=" in member.read().decode()
    ml_layers = skopeo_raw(fleet / ".layerforge", "ml:latest")["layers"]
    with tarfile.open(store.blob_path(ml_layers[-1]["digest"])) as tar:
        assert not [n for n in tar.getnames() if n.endswith(".pyc")]  # ml does not ask for it


def test_chroot_runner_verifies_too(
    fleet: Path, shared_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_tools("unshare")
    assert os.geteuid() == 0, "the chroot runner needs root: run the integration tests as root"
    capsys.readouterr()
    args = ["verify", "-f", str(fleet), "--cache-dir", str(shared_cache), "--json"]
    assert main([*args, "--runner", "chroot", "cpu", "api"]) == 0
    checks = json.loads(capsys.readouterr().out)["checks"]
    assert len(checks) == 6 and all(c["ok"] for c in checks)  # cpu 3, api 2 + its command
