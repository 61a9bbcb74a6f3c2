"""The one seam to uv: its command lines and the files it reads and writes.

``pip compile`` resolves (for ``layerforge lock``) and ``pip install --prefix`` installs the
locked wheels (for the build). Both run for the *target* Python and platform, take wheels
only (a package with no wheel at all is locked as its sdist, see :func:`run_compile`) and read
the project's indexes, so what the lock names is what the build installs.
"""

from __future__ import annotations

import json
import re
import sys
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from packaging.utils import canonicalize_name

from layerforge import proc
from layerforge.errors import ResolveError
from layerforge.lock.lockfile import Package
from layerforge.manifest import Node, Project

PLATFORMS = {"linux/amd64": "x86_64-manylinux_2_28"}


def uv_platform(project: Project) -> str:
    return PLATFORMS[project.platforms[0]]


@dataclass(frozen=True)
class ResolveOptions:
    upgrade: bool = False
    upgrade_packages: tuple[str, ...] = ()


def compile_argv(project: Project, work: Path, options: ResolveOptions) -> list[str]:
    """``uv pip compile`` of ``work``'s requirements.in/constraints.txt into pylock.toml."""
    argv = [
        proc.find_uv(),
        "pip",
        "compile",
        "requirements.in",
        "--constraint",
        "constraints.txt",
        "--python-version",
        project.python,
        "--python-platform",
        uv_platform(project),
        "--format",
        "pylock.toml",
        "--output-file",
        "pylock.toml",
        "--quiet",
        "--no-header",
        "--only-binary",
        ":all:",
    ]
    argv += _index_options(project)
    for name in options.upgrade_packages:
        argv += ["--upgrade-package", name]
    del work
    return argv


WHEELS_REQUIRED = re.compile(r"Wheels are required for `([^`]+)`")
SDIST_ROUNDS = 10


def run_compile(argv: list[str], work: Path) -> proc.Result:
    """Run ``compile_argv`` in ``work``, locking a source distribution only where uv finds
    no wheel at all.

    The first attempt takes wheels only, so a package with any usable wheel keeps it. When
    uv says ``Wheels are required for `NAME```, the compile is run again with ``--no-binary
    NAME`` for each name so far (a new name may appear once another resolves), at most
    ``SDIST_ROUNDS`` times. Dropping ``--only-binary`` instead would silently lock the
    sdist of any package whose newest version has no wheel.
    """
    no_binary: list[str] = []
    result = proc.run(argv, cwd=work, check=False)
    for _ in range(SDIST_ROUNDS):
        if result.returncode == 0:
            break
        named = [n for n in WHEELS_REQUIRED.findall(result.stderr) if n not in no_binary]
        if not named:
            break
        no_binary += sorted(set(named))
        extra = [arg for name in no_binary for arg in ("--no-binary", name)]
        result = proc.run([*argv, *extra], cwd=work, check=False)
    return result


def install_argv(project: Project, stage: Path, requirements: Path) -> list[str]:
    """``uv pip install`` of exactly the hash-pinned ``requirements`` into the prefix ``stage``."""
    argv = [
        proc.find_uv(),
        "pip",
        "install",
        "--prefix",
        str(stage),
        "--no-deps",
        "--require-hashes",
        "--only-binary",
        ":all:",
        "-r",
        str(requirements),
        "--python",
        sys.executable,
        "--python-version",
        project.python,
        "--python-platform",
        uv_platform(project),
        "--link-mode",
        "hardlink",
        "--no-compile",
        "--quiet",
    ]
    return argv + _index_options(project)


def _index_options(project: Project) -> list[str]:
    argv: list[str] = []
    if project.index_url:
        argv += ["--index-url", project.index_url]
    for link in project.find_links:
        argv += ["--find-links", str(link)]
    return argv


def write_preferences(path: Path, packages: dict[str, Package]) -> None:
    if not packages:
        return
    body = ['lock-version = "1.0"', 'created-by = "layerforge"']
    for pkg in sorted(packages.values()):
        body += [
            "",
            "[[packages]]",
            f"name = {json.dumps(pkg.name)}",
            f"version = {json.dumps(pkg.version)}",
        ]
    path.write_text("\n".join(body) + "\n")


def parse_pylock(path: Path, node: Node) -> dict[str, Package]:
    data = tomllib.loads(path.read_text())
    out: dict[str, Package] = {}
    for raw in data.get("packages", []):
        name = canonicalize_name(str(raw["name"]))
        wheels: Sequence[dict[str, Any]] = raw.get("wheels", [])
        sdist: dict[str, Any] | None = raw.get("sdist")
        if not wheels and not sdist:
            raise ResolveError(
                f"{node.section}: {name} {raw.get('version')} has no wheel for this Python "
                "and platform; layerforge installs wheels only",
                hint="pick a version that publishes a manylinux wheel, or build one into a "
                "find_links directory",
            )
        dist = wheels[0] if wheels else sdist
        assert dist is not None
        url = str(dist.get("url") or dist.get("path") or "")
        out[name] = Package(
            name=name,
            version=str(raw["version"]),
            filename=unquote(Path(urlparse(url).path).name),
            url=url,
            sha256=str(dist["hashes"]["sha256"]),
            size=int(dist.get("size", 0)),
            kind="wheel" if wheels else "sdist",
        )
    return out
