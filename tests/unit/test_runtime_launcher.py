"""The in-image launcher: installs a group's locked wheels once, from a local find-links dir
of tiny real wheels, into a --target directory (never into this interpreter)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from layerforge import proc
from layerforge.builder import runtime_layer
from layerforge.lock.lockfile import LockedGroup, LockedNode, Package
from layerforge.runtime import launcher
from layerforge.runtime.wheel import Target
from tests.wheelkit import make_wheel, sha256_of

SCRIPT = "#!python\nprint('data script')\n"


@pytest.fixture
def image(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(pins dir, find-links dir, target dir) as the runtime layer lays them out."""
    wheels = tmp_path / "wheels"
    tiny = make_wheel(wheels, "tiny", "1.0", scripts={"tiny-cli": "tiny:main"},
                      data_scripts={"tiny-data": SCRIPT})  # fmt: skip
    other = make_wheel(wheels, "other", "2.0")
    packages = tuple(
        Package(n, v, w.name, f"https://wheels.invalid/{w.name}", sha256_of(w), w.stat().st_size)
        for n, v, w in (("tiny", "1.0", tiny), ("other", "2.0", other))
    )
    locked = LockedNode("sha256:0", runtime=(LockedGroup("extra", "sha256:1", packages),))
    pins = tmp_path / "pins"
    for entry in runtime_layer.runtime_entries(locked, "3.11"):
        if entry.path.startswith(runtime_layer.PINS_DIR + "/"):
            pins.mkdir(exist_ok=True)
            (pins / Path(entry.path).name).write_bytes(entry.data or b"")
    return pins, wheels, tmp_path / "target"


def env_for(pins: Path, wheels: Path | None, **extra: str) -> dict[str, str]:
    env = {"LAYERFORGE_RUNTIME_DIR": str(pins), "LAYERFORGE_RUNTIME_OFFLINE": "1", **extra}
    if wheels is not None:
        env["LAYERFORGE_RUNTIME_FIND_LINKS"] = str(wheels)
    return env


def test_ensure_installs_once_and_then_does_nothing(
    image: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    pins, wheels, target = image
    env = env_for(pins, wheels)
    assert launcher.main(["--target", str(target), "ensure", "extra"], env) == 0
    assert (target / "tiny" / "__init__.py").is_file()
    assert (target / "other" / "__init__.py").is_file()
    cli = (target / "bin" / "tiny-cli").read_text()
    assert cli.startswith(f"#!{sys.executable}\n") and "from tiny import main" in cli
    assert os.access(target / "bin" / "tiny-cli", os.X_OK)
    data_script = (target / "bin" / "tiny-data").read_text()
    assert data_script == f"#!{sys.executable}\nprint('data script')\n"
    record = (target / "tiny-1.0.dist-info" / "RECORD").read_text()
    assert "tiny/__init__.py,sha256=" in record and "bin/tiny-cli,sha256=" in record
    assert (target / "tiny-1.0.dist-info" / "INSTALLER").read_text() == "layerforge-runtime\n"
    (target / "tiny" / "__init__.py").write_text("CHANGED = True\n")
    assert launcher.main(["--target", str(target), "ensure", "extra"], env) == 0
    assert (target / "tiny" / "__init__.py").read_text() == "CHANGED = True\n"  # untouched
    err = capsys.readouterr().err
    assert "extra: installed" in err and "extra: already installed" in err


def test_new_pins_install_again(image: tuple[Path, Path, Path]) -> None:
    pins, wheels, target = image
    env = env_for(pins, wheels)
    assert launcher.main(["--target", str(target), "ensure", "extra"], env) == 0
    settings = launcher.Settings.from_env(env)
    tgt = Target.directory(target, sys.executable)
    assert launcher.installed(settings, tgt, "extra")
    (pins / "extra.txt").write_text((pins / "extra.txt").read_text() + "# a new image\n")
    assert not launcher.installed(settings, tgt, "extra")
    assert launcher.ensure(settings, tgt, "extra") is True


def test_groups_come_from_the_environment_too(image: tuple[Path, Path, Path]) -> None:
    pins, wheels, target = image
    env = env_for(pins, wheels, LAYERFORGE_RUNTIME_GROUPS="extra")
    assert launcher.main(["--target", str(target), "ensure"], env) == 0
    assert (target / "tiny").is_dir()
    assert launcher.parse_groups(["a,b c", "b", ""]) == ["a", "b", "c"]


def test_offline_without_the_wheel_is_a_clear_network_error(
    image: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    pins, _wheels, target = image
    code = launcher.main(["--target", str(target), "ensure", "extra"], env_for(pins, None))
    assert code == 3
    err = capsys.readouterr().err
    assert "LAYERFORGE_RUNTIME_FIND_LINKS" in err and "not in" in err
    assert not (target / ".layerforge-runtime" / "extra").exists()


def test_download_failure_says_offline(
    image: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    pins, _wheels, target = image
    env = {"LAYERFORGE_RUNTIME_DIR": str(pins)}  # online, but the URL does not resolve
    assert launcher.main(["--target", str(target), "ensure", "extra"], env) == 3
    assert "Offline?" in capsys.readouterr().err


def test_a_wheel_with_the_wrong_hash_is_refused(
    image: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    pins, wheels, target = image
    make_wheel(wheels, "tiny", "1.0", requires=("something-else",))  # same name, other bytes
    assert launcher.main(["--target", str(target), "ensure", "extra"], env_for(pins, wheels)) == 1
    assert "does not match the locked" in capsys.readouterr().err
    assert not (target / "tiny").exists()


def test_unknown_group_is_a_usage_error(
    image: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    pins, wheels, target = image
    assert launcher.main(["--target", str(target), "ensure", "llm"], env_for(pins, wheels)) == 2
    assert "no runtime group 'llm' (groups: extra)" in capsys.readouterr().err


def test_list_reports_groups_and_state(
    image: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    pins, wheels, target = image
    env = env_for(pins, wheels)
    assert launcher.main(["--target", str(target), "list", "--json"], env) == 0
    (row,) = json.loads(capsys.readouterr().out)["groups"]
    assert row["group"] == "extra" and row["distributions"] == 2 and not row["installed"]


def _launcher(target: Path, *args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "layerforge.runtime.launcher", "--target", str(target), *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_concurrent_starts_install_once(image: tuple[Path, Path, Path]) -> None:
    pins, wheels, target = image
    env = env_for(pins, wheels)
    procs = [_launcher(target, "ensure", "extra", env=env) for _ in range(3)]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0]
    states = sorted(err.strip().rsplit(": ", 1)[-1] for _out, err in outputs)
    assert states == ["already installed", "already installed", "installed"]


def test_exec_ensures_then_runs_the_command(image: tuple[Path, Path, Path]) -> None:
    pins, wheels, target = image
    env = env_for(pins, wheels, LAYERFORGE_RUNTIME_GROUPS="extra", PYTHONPATH=str(target))
    code = "import tiny, other; print(tiny.VERSION, other.VERSION)"
    child = _launcher(target, "exec", "--", sys.executable, "-c", code, env=env)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    assert out.strip() == "1.0 2.0"
    env.pop("LAYERFORGE_RUNTIME_GROUPS")
    child = _launcher(target, "exec", "--group", "extra", "--", sys.executable, "-c", code, env=env)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0 and "extra: already installed" in err
    child = _launcher(target, "exec", "--", env=env)
    assert child.communicate(timeout=60)[1].count("exec needs a command") == 1
    assert child.returncode == 2


@pytest.mark.parametrize("installer", ["pip", "uv"])
def test_pip_and_uv_installers_take_the_same_pins(
    image: tuple[Path, Path, Path], installer: str
) -> None:
    pins, wheels, target = image
    uv_dir = str(Path(proc.find_uv()).parent)
    env = env_for(pins, wheels, LAYERFORGE_RUNTIME_INSTALLER=installer)
    env["PATH"] = f"{uv_dir}:{os.environ['PATH']}"
    child = _launcher(target, "ensure", "extra", env=env)
    _out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    assert (target / "tiny" / "__init__.py").is_file()
    assert (target / ".layerforge-runtime" / "extra").is_file()


def test_bad_installer_setting(capsys: pytest.CaptureFixture[str]) -> None:
    env = {"LAYERFORGE_RUNTIME_INSTALLER": "conda"}
    assert launcher.main(["list"], env) == 2
    assert "use builtin, pip or uv" in capsys.readouterr().err


def test_online_the_wheel_comes_from_its_locked_url(
    image: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    import functools
    import http.server
    import threading

    pins, wheels, target = image

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            del format, args

    handler = functools.partial(Quiet, directory=str(wheels))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        doc = json.loads((pins / "extra.json").read_text())
        base = f"http://127.0.0.1:{server.server_address[1]}"
        for wheel in doc["wheels"]:
            wheel["url"] = f"{base}/{wheel['filename']}"
        (pins / "extra.json").write_text(json.dumps(doc))
        env = {"LAYERFORGE_RUNTIME_DIR": str(pins)}
        assert launcher.main(["--target", str(target), "ensure", "extra"], env) == 0
    finally:
        server.shutdown()
        server.server_close()
    assert (target / "tiny" / "__init__.py").is_file()
    assert list((target / ".layerforge-runtime" / "downloads").iterdir()) == []  # not kept
    assert "extra: installing 2 distributions" in capsys.readouterr().err


def test_a_group_name_is_never_a_path(image: tuple[Path, Path, Path]) -> None:
    pins, wheels, target = image
    (pins.parent / "evil.txt").write_text("x\n")
    env = env_for(pins, wheels)
    assert launcher.main(["--target", str(target), "ensure", "../evil"], env) == 2


def test_an_untrusted_certificate_gets_its_own_advice() -> None:
    import ssl
    import urllib.error

    exc = urllib.error.URLError(ssl.SSLCertVerificationError("self-signed certificate"))
    assert "SSL_CERT_FILE" in launcher._advice(exc, "(none)")
    assert "Offline?" in launcher._advice(urllib.error.URLError("no route"), "(none)")
