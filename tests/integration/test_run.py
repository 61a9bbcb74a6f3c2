"""``layerforge run``: an image's program in the sandbox, on the caller's terminal, with the
image's Env, WorkingDir and Entrypoint/Cmd; its exit code; the current directory mounted;
a server reachable on the host's port. A real Debian base (debootstrap, shared cache) and a
service with a source; ``layerforge`` runs as a subprocess so that the program's own
output is what the test reads."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from layerforge import proc
from layerforge.cli import main
from tests.integration.registry_server import free_port

pytestmark = pytest.mark.integration

PROJECT = """
[project]
name = "runner"
python = "3.11"

[bases.os]
from = { debootstrap = "bookworm" }

[services.svc]
base = "os"
source = "svc"
env = { FOO = "bar" }
command = ["python3", "-m", "svc"]
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, shared_cache: Path) -> Path:
    root = tmp_path_factory.mktemp("run") / "p"
    (root / "svc/svc").mkdir(parents=True)
    (root / "svc/svc/__main__.py").write_text(
        "import os, sys\nprint('svc says', os.environ['FOO'], os.getcwd(), sys.argv[1:])\n"
        "sys.exit(int(os.environ.get('CODE', '0')))\n"
    )
    (root / "layerforge.toml").write_text(PROJECT)
    common = ["-f", str(root), "--cache-dir", str(shared_cache)]
    assert main(["lock", *common]) == 0
    assert main(["build", "--no-verify", *common]) == 0
    return root


def layerforge(project: Path, cache: Path, *args: str, cwd: Path | None = None,
               timeout: float = 300) -> subprocess.CompletedProcess[str]:  # fmt: skip
    argv = [sys.executable, "-m", "layerforge", "run", "-f", str(project),
            "--cache-dir", str(cache), *args]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          check=False)  # fmt: skip


def test_run_uses_the_images_command_env_and_workdir(project: Path, shared_cache: Path) -> None:
    out = layerforge(project, shared_cache, "-e", "CODE=0", "svc")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("svc says bar /app []"), out.stdout + out.stderr


def test_run_a_command_with_its_exit_code(project: Path, shared_cache: Path) -> None:
    script = "echo $FOO; pwd; id -u; echo $HOME; touch /tmp/ok && echo tmp-writable; exit 3"
    out = layerforge(project, shared_cache, "svc", "--", "sh", "-c", script)
    assert out.returncode == 3, out.stderr
    assert out.stdout.splitlines() == ["bar", "/app", "0", "/root", "tmp-writable"]
    # the image (a shared cache of unpacked layers) is read-only
    out = layerforge(project, shared_cache, "svc", "--", "sh", "-c", "touch /app/x")
    assert out.returncode != 0 and "Read-only file system" in out.stderr


def test_run_mounts_the_current_directory(
    project: Path, shared_cache: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "input.txt").write_text("from the host\n")
    script = "cat /src/input.txt && echo written > /src/output.txt"
    out = layerforge(project, shared_cache, "--mount-cwd", "svc", "--", "sh", "-c", script,
                     cwd=work)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout == "from the host\n"
    assert (work / "output.txt").read_text() == "written\n"
    at = ("--mount-cwd", "--mount-at", "/data")
    out = layerforge(project, shared_cache, *at, "svc", "ls", "/data", cwd=work)
    assert out.stdout.split() == ["input.txt", "output.txt"], out.stderr


def test_run_port_reachable_and_no_network(project: Path, shared_cache: Path) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "layerforge", "run", "-f", str(project), "--cache-dir",
            str(shared_cache), "svc", "--", "python3", "-m", "http.server", str(port),
            "--bind", "0.0.0.0"]  # fmt: skip
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, status = time.monotonic() + 60, None
        while time.monotonic() < deadline and status is None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            try:
                conn.request("GET", "/")
                status = conn.getresponse().status
            except OSError:
                time.sleep(0.2)
            finally:
                conn.close()
        assert status == 200
    finally:
        server.terminate()
        server.wait(timeout=30)
    # --no-network: the program cannot reach the host's ports
    probe = (f"import socket; s = socket.socket(); s.settimeout(2); "
             f"print(s.connect_ex(('127.0.0.1', {port})))")  # fmt: skip
    out = layerforge(project, shared_cache, "--no-network", "svc", "--", "python3", "-c", probe)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() != "0"


def test_run_refuses_unbuilt_and_unknown(project: Path, shared_cache: Path, tmp_path: Path) -> None:
    out = layerforge(project, shared_cache, "nope")
    assert out.returncode == 2 and "nope" in out.stderr and "Traceback" not in out.stderr
    changed = tmp_path / "changed"
    proc.run(["cp", "-a", str(project), str(changed)])
    (changed / "svc/svc/__main__.py").write_text("print('changed')\n")
    out = layerforge(changed, shared_cache, "svc")
    assert out.returncode == 2, out.stderr
    assert "not built for the current manifest" in out.stderr
    assert "layerforge build svc" in out.stderr
    assert os.path.isdir(changed / ".layerforge")
