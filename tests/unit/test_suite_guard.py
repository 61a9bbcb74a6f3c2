"""The suite cannot pass by skipping: missing tools fail, a skipped test fails the run,
setup installs every tool the tests call, and /usr/sbin tools are found off PATH."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from layerforge import proc
from layerforge.errors import ToolError
from tests.conftest import REPO, TEST_TOOL_PACKAGES, require_tools

NO_SBIN = "/usr/bin:/bin"


def test_a_missing_tool_fails_the_test_with_the_install_command() -> None:
    with pytest.raises(pytest.fail.Exception) as info:
        require_tools("bwrap", "no-such-tool-4711", "pgrep")
    message = str(info.value)
    assert "no-such-tool-4711: no-such-tool-4711 is not installed" in message
    assert "scripts/setup.sh" in message
    assert "bwrap" not in message.replace("run scripts/setup.sh", "")  # only what is missing


def test_a_missing_test_tool_names_its_debian_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(pytest.fail.Exception, match=r"pgrep: .*apt-get install -y procps"):
        require_tools("pgrep")


def test_debootstrap_is_found_when_sbin_is_off_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """A sudo-less shell's PATH often lacks /usr/sbin, where debootstrap lives."""
    real = Path("/usr/sbin/debootstrap")
    assert real.is_file(), "debootstrap is not installed (run scripts/setup.sh)"
    monkeypatch.setenv("PATH", NO_SBIN)
    assert proc.which("debootstrap") == str(real)
    require_tools("debootstrap")  # the suite's gate agrees with layerforge
    with pytest.raises(ToolError, match="apt-get install -y bubblewrap"):
        monkeypatch.setenv("PATH", "/nonexistent")
        proc.which("bwrap")  # /usr/bin is not searched behind the user's back


# -- a run with a skipped test fails -----------------------------------------------------------


def inner_pytest(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    """Run pytest on one test file with this suite's conftest as a plugin."""
    (tmp_path / "test_inner.py").write_text(body)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider",
         "-q", str(tmp_path / "test_inner.py")],
        cwd=tmp_path, capture_output=True, text=True, env=env, check=False, timeout=120,
    )  # fmt: skip


PASSING = "def test_ok():\n    assert 1 + 1 == 2\n"


def test_an_all_green_run_passes(tmp_path: Path) -> None:
    child = inner_pytest(tmp_path, PASSING)
    assert child.returncode == 0, child.stdout


@pytest.mark.parametrize(
    "body",
    [
        "import pytest\n\ndef test_skips():\n    pytest.skip('no tool here')\n",
        "import pytest\n\n@pytest.mark.skipif(True, reason='no tool here')\ndef test_s():\n"
        "    pass\n",
        "import pytest\n\npytest.importorskip('no_such_module_4711')\n",
        "import pytest\n\n@pytest.mark.xfail(reason='no tool here')\ndef test_x():\n"
        "    assert False\n",
    ],
    ids=["skip", "skipif", "importorskip", "xfail"],
)
def test_a_run_with_a_test_that_did_not_run_fails(tmp_path: Path, body: str) -> None:
    child = inner_pytest(tmp_path, PASSING + body)
    assert child.returncode == 1, child.stdout
    assert "tests that did not run (this fails the run)" in child.stdout
    assert "scripts/setup.sh" in child.stdout


def test_no_test_collected_is_not_a_pass(tmp_path: Path) -> None:
    child = inner_pytest(tmp_path, "# no tests\n")
    assert child.returncode == pytest.ExitCode.NO_TESTS_COLLECTED


def test_no_test_file_skips() -> None:
    """The run-time guard only sees the tests a run selects; this sees every file."""
    pattern = re.compile(r"pytest\.skip\(|skipif|importorskip|mark\.skip\b|mark\.xfail|xfail\(")
    offenders = []
    for path in sorted((REPO / "tests").rglob("*.py")):
        if path == Path(__file__):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert offenders == []


# -- scripts: setup installs what the tests call; test.sh fails on no tests ------------------


def setup_packages() -> set[str]:
    text = (REPO / "scripts" / "setup.sh").read_text()
    match = re.search(r"^packages=\(([^)]*)\)", text, re.MULTILINE)
    assert match, "scripts/setup.sh lists its apt packages in packages=(...)"
    return set(match.group(1).split())


def test_setup_installs_every_tool_the_suite_calls() -> None:
    wanted = set(TEST_TOOL_PACKAGES.values())
    for hint in proc.INSTALL_HINTS.values():
        if "apt-get install -y " in hint:
            wanted.add(hint.rsplit(" ", 1)[1])
    assert wanted - setup_packages() == set()


def test_every_tool_a_test_requires_has_an_install_hint() -> None:
    required = set()
    for path in (REPO / "tests").rglob("*.py"):
        for call in re.findall(r"require_tools\(([^)]*)\)", path.read_text()):
            required |= set(re.findall(r'"([^"]+)"', call))
    required -= {"no-such-tool-4711"}
    assert required, "the tests name the tools they need"
    assert required - set(proc.INSTALL_HINTS) - set(TEST_TOOL_PACKAGES) == set()


def test_the_test_script_fails_when_no_test_is_collected(tmp_path: Path) -> None:
    """scripts/test.sh run for real, with setup, ruff, mypy and lint-imports replaced by
    `true` and the real pytest finding no test: its exit status 5 must be the script's."""
    (tmp_path / "scripts").mkdir()
    script = tmp_path / "scripts" / "test.sh"
    script.write_bytes((REPO / "scripts" / "test.sh").read_bytes())
    (tmp_path / "scripts" / "setup.sh").write_text("true\n")
    venv = tmp_path / ".venv" / "bin"
    venv.mkdir(parents=True)
    for tool in ("ruff", "mypy", "lint-imports"):
        (venv / tool).symlink_to("/bin/true")
    (venv / "pytest").symlink_to(Path(sys.executable).parent / "pytest")
    (tmp_path / "tests").mkdir()
    child = subprocess.run(
        ["bash", str(script), "tests"], capture_output=True, text=True, check=False, timeout=120
    )
    assert child.returncode == pytest.ExitCode.NO_TESTS_COLLECTED, child.stdout + child.stderr
    assert "no tests ran" in child.stdout
