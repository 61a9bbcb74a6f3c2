"""Issue 14 item 2: the exported Dockerfile creates the user (as our user layer does), runs
its RUNs as root, and ends with USER (numeric), EXPOSE and HEALTHCHECK."""

from __future__ import annotations

from pathlib import Path

from layerforge.export import make_context
from layerforge.lock import lockfile
from layerforge.manifest import load
from tests.unit.test_export import SIX, instructions, options_for, rendered, write_project

MANIFEST = """
[project]
name = "p"
python = "3.12"

[bases.cpu]
from = "python:3.12-slim"
system = ["curl"]
user = "app"
writable = ["/srv/cache"]
expose = [8000]
requirements = ["six"]

[bases.ml]
from = "cpu"
requirements = ["six"]

[services.api]
base = "ml"
source = "api"
writable = ["/app/cache"]
expose = ["9000/udp"]
healthcheck.command = ["python", "-c", "import api"]
healthcheck.interval = "30s"
healthcheck.timeout = "1500ms"
healthcheck.start_period = "10s"
healthcheck.retries = 3
command = ["python", "-m", "api"]

[services.plain]
base = "cpu"
healthcheck = false
user = "10002:10003"
"""


def _files(tmp_path: Path, manifest: str = MANIFEST) -> dict[str, list[str]]:
    root = tmp_path / "proj"
    (root / "api").mkdir(parents=True)
    write_project(root, manifest, {"cpu": (SIX,), "ml": (SIX,)})
    ctx = make_context(
        load(root / "layerforge.toml"), lockfile.read(root / "layerforge.lock"), options_for(root)
    )
    files = rendered(ctx, "dockerfiles")
    return {
        name.split("/")[1]: instructions(text)
        for name, text in files.items()
        if name.endswith("/Dockerfile")
    }


def _index(lines: list[str], start: str) -> int:
    return next(i for i, line in enumerate(lines) if line.startswith(start))


def test_base_creates_the_user_after_its_system_step_and_switches_last(tmp_path: Path) -> None:
    cpu = _files(tmp_path)["cpu"]
    (run,) = [line for line in cpu if "useradd" in line]
    assert "getent passwd 10001" in run
    assert "groupadd --gid 10001 app" in run
    assert (
        "useradd --uid 10001 --gid 10001 --no-create-home --home-dir /home/app "
        "--shell /usr/sbin/nologin app" in run
    )
    assert "install -d -m 0750 -o 10001 -g 10001 /home/app" in run
    assert "install -d -m 0755 -o 10001 -g 10001 /srv/cache" in run
    system = _index(cpu, "RUN --mount=type=cache,target=/var/cache/apt")
    pip = next(i for i, line in enumerate(cpu) if "pip install" in line)
    assert system < cpu.index(run) < pip  # the order of our builder's layers
    assert cpu[_index(cpu, "USER")] == "USER 10001:10001"
    assert _index(cpu, "USER") > pip  # the installs run as root
    assert "EXPOSE 8000/tcp" in cpu
    assert not [line for line in cpu if line.startswith("HEALTHCHECK")]


def test_a_child_runs_as_root_then_as_the_inherited_user(tmp_path: Path) -> None:
    files = _files(tmp_path)
    ml = files["ml"]
    assert ml[_index(ml, "FROM") + 1] == "USER root"
    assert ml[-1] == "USER 10001:10001" or "USER 10001:10001" in ml
    assert not [line for line in ml if "useradd" in line or line.startswith("EXPOSE")]
    api = files["api"]
    (run,) = [line for line in api if "install -d" in line]
    assert "useradd" not in run
    assert "install -d -m 0755 -o 10001 -g 10001 /app/cache" in run
    assert "EXPOSE 9000/udp" in api
    assert (
        'HEALTHCHECK --interval=30s --timeout=1500ms --start-period=10s --retries=3 CMD ["python", '
        '"-c", "import api"]' in api
    )
    assert _index(api, "USER 10001") < _index(api, "COPY")


def test_uid_only_user_and_healthcheck_off(tmp_path: Path) -> None:
    plain = _files(tmp_path)["plain"]
    (run,) = [line for line in plain if "useradd" in line]
    assert "useradd --uid 10002 --gid 10003" in run and "u10002" in run
    assert "USER 10002:10003" in plain
    assert "HEALTHCHECK NONE" in plain


def test_projects_without_the_keys_export_as_before(tmp_path: Path) -> None:
    text = "\n".join(
        line
        for line in MANIFEST.splitlines()
        if not line.startswith(("user", "writable", "expose", "healthcheck"))
    )
    for lines in _files(tmp_path, text).values():
        assert not [
            line
            for line in lines
            if line.startswith(("USER", "EXPOSE", "HEALTHCHECK")) or "useradd" in line
        ]
