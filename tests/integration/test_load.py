"""``layerforge load``: an image handed to a local engine with its manifest digest kept.

podman loads for real (a private vfs storage through CONTAINERS_STORAGE_CONF). docker is a
client without a daemon here, so a stand-in ``docker`` on PATH records the command lines it
is given and the archive piped into ``docker load``; the archive must be byte for byte what
``export archive`` writes, and the check afterwards must ask for the image ID. The forms
that docs/local.md gives for skopeo and ``podman pull`` are run too."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.integration.tiny import cli, cli_json, local_digests, tiny_project
from tests.integration.tools import run

pytestmark = pytest.mark.integration

FAKE_DOCKER = """#!/bin/sh
printf '%s\\n' "$*" >> "{log}/argv"
case "$1" in
  load) cat > "{log}/stdin.tar"; echo "Loaded image: whatever" ;;
  image) python3 -c 'import json, sys, tarfile
t = tarfile.open(sys.argv[1])
print(json.load(t.extractfile("manifest.json"))[0]["Config"].replace("blobs/sha256/", "{prefix}"))
' "{log}/stdin.tar" ;;
esac
"""


@pytest.fixture
def storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private containers-storage (vfs) for podman and skopeo."""
    conf = tmp_path / "storage.conf"
    conf.write_text(
        f'[storage]\ndriver = "vfs"\ngraphroot = "{tmp_path / "graph"}"\n'
        f'runroot = "{tmp_path / "run"}"\n'
    )
    monkeypatch.setenv("CONTAINERS_STORAGE_CONF", str(conf))
    return conf


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, tuple[str, ...]]:
    root = tiny_project(tmp_path / "p")
    cache = ("--cache-dir", str(tmp_path / "cache"))
    assert cli("lock", "-f", str(root), *cache)[0] == 0
    cli_json("build", "--no-verify", "-f", str(root), *cache)
    return root, cache


def _podman_digest(name: str) -> str:
    return run(["podman", "image", "inspect", "--format", "{{.Digest}}", name]).strip()


def test_podman_load_keeps_digest(storage: Path, project: tuple[Path, tuple[str, ...]]) -> None:
    root, cache = project
    local = local_digests(root / ".layerforge")
    doc = cli_json("load", "svc", "--into", "podman", "-f", str(root), *cache)
    assert doc == {"engine": "podman", "image": "tiny/svc:latest", "digest": local["svc"],
                   "engine_id": local["svc"]}  # fmt: skip
    assert _podman_digest("localhost/tiny/svc:latest") == local["svc"]
    code, out, err = cli("load", "base", "-f", str(root), *cache)  # podman is the default
    assert code == 0, err
    assert out.strip() == f"loaded tiny/base:latest into podman: {local['base']}"
    assert _podman_digest("localhost/tiny/base:latest") == local["base"]


def test_docker_gets_the_archive_on_stdin(
    project: tuple[Path, tuple[str, ...]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, cache = project
    log, bin_dir = tmp_path / "log", tmp_path / "bin"
    log.mkdir()
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(FAKE_DOCKER.format(log=log, prefix="sha256:"))
    docker.chmod(docker.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    doc = cli_json("load", "svc", "--into", "docker", "-f", str(root), *cache)
    config = json.loads(run(["skopeo", "inspect", "--config", "--raw",
                             f"oci:{root / '.layerforge'}:svc:latest"]))  # fmt: skip
    assert config["config"]  # skopeo read it
    assert (log / "argv").read_text().splitlines() == [
        "load",
        "image inspect --format {{.Id}} tiny/svc:latest",
    ]
    cli("export", "archive", "svc", "-o", str(tmp_path / "svc.tar"), "-f", str(root), *cache)
    assert (log / "stdin.tar").read_bytes() == (tmp_path / "svc.tar").read_bytes()
    assert doc["digest"] == local_digests(root / ".layerforge")["svc"]
    assert doc["engine_id"].startswith("sha256:") and doc["engine_id"] != doc["digest"]

    # an engine that holds something else under the name is an error
    (log / "argv").unlink()
    docker.write_text(FAKE_DOCKER.format(log=log, prefix="sha256:0"))
    code, _, err = cli("load", "svc", "--into", "docker", "-f", str(root), *cache)
    assert code == 1 and "docker holds tiny/svc:latest as sha256:0" in err, err


def test_load_without_engine_or_with_a_failing_one(
    project: tuple[Path, tuple[str, ...]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, cache = project
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    code, _, err = cli("load", "svc", "-f", str(root), *cache)
    assert code == 2 and "neither podman nor docker" in err and "export archive" in err, err
    failing = bin_dir / "podman"
    failing.write_text("#!/bin/sh\necho 'storage is broken' >&2\nexit 125\n")
    failing.chmod(0o755)
    code, _, err = cli("load", "svc", "-f", str(root), *cache)
    assert code == 1 and "podman failed" in err and "storage is broken" in err, err
    assert "Traceback" not in err


def test_documented_forms_work(storage: Path, project: tuple[Path, tuple[str, ...]],
                               tmp_path: Path) -> None:  # fmt: skip
    """docs/local.md: skopeo copy from the dot directory, and podman pull from a store path
    without a dot (podman refuses `oci:.layerforge:...`: the path names the image)."""
    root, _ = project
    local = local_digests(root / ".layerforge")
    subprocess.run(["skopeo", "copy", "oci:.layerforge:svc:latest",
                    "containers-storage:localhost/svc:latest"],
                   cwd=root, check=True, capture_output=True)  # fmt: skip
    assert _podman_digest("localhost/svc:latest") == local["svc"]
    refused = subprocess.run(["podman", "pull", "oci:.layerforge:svc:latest"], cwd=root,
                             capture_output=True, text=True, check=False)  # fmt: skip
    assert refused.returncode != 0 and "invalid reference format" in refused.stderr
    store = tmp_path / "lfstore"
    store.symlink_to(root / ".layerforge")
    run(["podman", "pull", f"oci:{store}:base:latest"])
    assert _podman_digest(f"localhost{store}:latest") == local["base"]
