"""Shared fixtures. Integration tests use real tools, started here or by the tests.

No test may skip: a missing tool or privilege fails the test that needs it (with the command
that installs it), and a run in which any test was skipped or xfailed exits non-zero, so that
a tool missing on a CI runner can never turn tests into silent passes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from layerforge import proc
from layerforge.errors import ToolError

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "fleet"

# Debian packages of the programs the tests run themselves (layerforge's own are in
# proc.INSTALL_HINTS); scripts/setup.sh installs all of them.
TEST_TOOL_PACKAGES: dict[str, str] = {
    "pgrep": "procps",
    "htpasswd": "apache2-utils",
    "chromium": "chromium",
    "podman": "podman",
    "zstd": "zstd",
    "gzip": "gzip",
    "tar": "tar",
    "mount": "mount",
    "umount": "mount",
    "unshare": "util-linux",
    "git": "git",
    "openssl": "openssl",
    "shellcheck": "shellcheck",
}


def require_tools(*tools: str) -> None:
    """Fail (never skip) the calling test if one of ``tools`` cannot be found.

    Tools are looked up the way layerforge looks them up (``proc.which``: PATH, then the
    sbin directories a sudo-less PATH often lacks).
    """
    problems = []
    for tool in tools:
        try:
            proc.which(tool)
        except ToolError as exc:
            package = TEST_TOOL_PACKAGES.get(tool)
            hint = f"apt-get install -y {package}" if package else exc.hint
            problems.append(f"{tool}: {exc.message}; install it: {hint}")
    if problems:
        pytest.fail(
            "missing tools (run scripts/setup.sh, which installs everything the suite needs):\n  "
            + "\n  ".join(problems),
            pytrace=False,
        )


# -- no silent passes: any skipped or xfailed test fails the whole run ----------------------

_NOT_RUN: list[str] = []


def _record(report: pytest.TestReport | pytest.CollectReport) -> None:
    if report.skipped:
        kind = "xfailed" if hasattr(report, "wasxfail") else "skipped"
        where = report.nodeid or "(collection)"
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
        _NOT_RUN.append(f"{kind}: {where}: {reason}")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _record(report)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    _record(report)


def pytest_sessionstart(session: pytest.Session) -> None:
    _NOT_RUN.clear()  # one list per session, also when pytest runs in-process twice


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    passing = (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED)  # 5: all skipped
    if _NOT_RUN and session.exitstatus in passing:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _NOT_RUN:
        terminalreporter.section("tests that did not run (this fails the run)", red=True)
        for line in _NOT_RUN:
            terminalreporter.line(line, red=True)
        terminalreporter.line(
            "every test must run: a missing tool is a failure (run scripts/setup.sh)", red=True
        )


@pytest.fixture(scope="session")
def shared_cache() -> Path:
    """OS sources (debootstrap) are cached across test runs, keyed by their inputs."""
    path = Path.home() / ".cache" / "layerforge"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def example_copy(tmp_path: Path) -> Path:
    """A private copy of examples/fleet (without any store)."""
    target = tmp_path / "fleet"
    shutil.copytree(EXAMPLE, target, ignore=shutil.ignore_patterns(".layerforge", "__pycache__"))
    return target


# Settings the CLI takes from the environment (issue 14, item 6): a developer's or CI's own
# values must not move the content keys and paths the tests expect.
LAYERFORGE_ENVIRONMENT = (
    "SOURCE_DATE_EPOCH",
    "LAYERFORGE_STORE",
    "LAYERFORGE_CACHE_DIR",
    "LAYERFORGE_REGISTRY",
)


@pytest.fixture(autouse=True)
def _no_layerforge_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in LAYERFORGE_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
