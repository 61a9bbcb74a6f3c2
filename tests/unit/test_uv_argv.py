"""The two uv command lines (``pip compile`` for the lock, ``pip install`` for the build).

Both must target the project's Python and platform, take wheels only, and read the same
indexes: a lock resolved for one target and installed for another is wrong without an error.
The argvs are captured at ``proc.run`` (uv does not run), and compared with the exact lists
layerforge used before the uv seam moved into ``layerforge.lock.uv``: the lock file and the
installed files must not change.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from layerforge import proc
from layerforge.builder.python import install
from layerforge.lock.lockfile import Package
from layerforge.lock.resolve import resolve
from layerforge.lock.uv import ResolveOptions
from layerforge.manifest import Project, load

UV = "/opt/uv/bin/uv"
INDEX = "https://index.example/simple"

MANIFEST = f"""
[project]
name = "demo"
python = "3.12"
index_url = "{INDEX}"
find_links = ["wheels"]

[bases.cpu]
from = {{ debootstrap = "bookworm" }}
requirements = ["six"]
"""

PYLOCK = """
lock-version = "1.0"

[[packages]]
name = "six"
version = "1.17.0"
wheels = [{ url = "https://index.example/six-1.17.0-py2.py3-none-any.whl", size = 11050, hashes = { sha256 = "aaaa" } }]
"""  # noqa: E501


def demo_project(tmp: Path) -> Project:
    (tmp / "wheels").mkdir()
    (tmp / "layerforge.toml").write_text(MANIFEST)
    return load(tmp / "layerforge.toml")


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    calls: list[list[str]] = []

    def fake_run(args: list[str], *, cwd: Path | None = None, **_: object) -> proc.Result:
        calls.append([str(a) for a in args])
        if cwd is not None and "compile" in args:
            (cwd / "pylock.toml").write_text(PYLOCK)
        return proc.Result(tuple(str(a) for a in args), 0, "", "")

    monkeypatch.setattr(proc, "find_uv", lambda: UV)
    monkeypatch.setattr(proc, "run", fake_run)
    return calls


def compile_argv_of(project: Project, calls: list[list[str]], options: ResolveOptions) -> list[str]:
    resolve(project, None, options)
    (argv,) = [c for c in calls if c[1:3] == ["pip", "compile"]]
    return argv


def install_argv_of(project: Project, calls: list[list[str]], stage: Path) -> list[str]:
    pkg = Package("six", "1.17.0", "six-1.17.0-py2.py3-none-any.whl", "u", "aaaa", 11050)
    install(project, [pkg], stage)
    (argv,) = [c for c in calls if c[1:3] == ["pip", "install"]]
    return argv


def value_of(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == flag]


def test_both_uv_argvs_target_the_same_python_platform_and_indexes(
    tmp_path: Path, captured: list[list[str]]
) -> None:
    project = demo_project(tmp_path)
    wheels = str(tmp_path / "wheels")
    argvs = [
        compile_argv_of(project, captured, ResolveOptions()),
        install_argv_of(project, captured, tmp_path / "stage"),
    ]
    for argv in argvs:
        assert argv[0] == UV
        assert value_of(argv, "--python-version") == ["3.12"]
        assert value_of(argv, "--python-platform") == ["x86_64-manylinux_2_28"]
        assert value_of(argv, "--only-binary") == [":all:"]
        assert value_of(argv, "--index-url") == [INDEX]
        assert value_of(argv, "--find-links") == [wheels]


def test_the_compile_argv_is_unchanged(tmp_path: Path, captured: list[list[str]]) -> None:
    project = demo_project(tmp_path)
    argv = compile_argv_of(project, captured, ResolveOptions(upgrade_packages=("six",)))
    assert argv == [  # recorded from layerforge.resolve._uv_argv before the move
        UV,
        "pip",
        "compile",
        "requirements.in",
        "--constraint",
        "constraints.txt",
        "--python-version",
        "3.12",
        "--python-platform",
        "x86_64-manylinux_2_28",
        "--format",
        "pylock.toml",
        "--output-file",
        "pylock.toml",
        "--quiet",
        "--no-header",
        "--only-binary",
        ":all:",
        "--index-url",
        INDEX,
        "--find-links",
        str(tmp_path / "wheels"),
        "--upgrade-package",
        "six",
    ]


def test_the_install_argv_is_unchanged(tmp_path: Path, captured: list[list[str]]) -> None:
    project = demo_project(tmp_path)
    stage = tmp_path / "stage"
    argv = install_argv_of(project, captured, stage)
    assert argv == [  # recorded from layerforge.builder.python.install before the move
        UV,
        "pip",
        "install",
        "--prefix",
        str(stage),
        "--no-deps",
        "--require-hashes",
        "--only-binary",
        ":all:",
        "-r",
        str(tmp_path / "stage.requirements.txt"),
        "--python",
        sys.executable,
        "--python-version",
        "3.12",
        "--python-platform",
        "x86_64-manylinux_2_28",
        "--link-mode",
        "hardlink",
        "--no-compile",
        "--quiet",
        "--index-url",
        INDEX,
        "--find-links",
        str(tmp_path / "wheels"),
    ]
