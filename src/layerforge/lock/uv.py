"""The one seam to uv: its command lines and the files it reads and writes.

``pip compile`` resolves (for ``layerforge lock``) and ``pip install --prefix`` installs the
locked wheels (for the build). Both run for the *target* Python and platform, take wheels
only (a package with no wheel at all is locked as its sdist, see :func:`run_compile`) and read
the project's indexes, so what the lock names is what the build installs.

Named indexes (``[[project.index]]``): ``pip compile`` reads a generated ``pyproject.toml``
(``[[tool.uv.index]]`` and ``[tool.uv.sources]``: the only way ``uv pip`` pins a distribution
to an index) with the default index on the command line, uv's first-index strategy kept. The
install is by pin, one ``uv pip install`` per locked index, so a pin is fetched from its
index only. Credentials are uv's business: it reads ``UV_INDEX_<NAME>_USERNAME/_PASSWORD``
and netrc from the environment each run inherits, and they are never written anywhere.
"""

from __future__ import annotations

import json
import re
import sys
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from packaging.utils import canonicalize_name

from layerforge import proc
from layerforge.errors import LockError, ResolveError
from layerforge.lock.lockfile import Package
from layerforge.manifest import Node, Project
from layerforge.manifest.indexes import credential_variables
from layerforge.manifest.model import Index

PLATFORMS = {"linux/amd64": "x86_64-manylinux_2_28"}  # the default: no C library found
ARCHES = {"linux/amd64": "x86_64"}
# the glibc minors uv accepts in ARCH-manylinux_2_MINOR (uv 0.13: no 2_29/2_30, none above 2_40)
MANYLINUX = (17, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40)


def uv_platform(project: Project) -> str:
    """The lock's top-level platform: the tag of a root base whose C library is unknown."""
    return PLATFORMS[project.platforms[0]]


def parse_libc(libc: str, where: str = "layerforge.lock") -> tuple[str, tuple[int, int] | None]:
    """("glibc", (2, 36)) of "glibc 2.36"; ("musl", None) of "musl" (version unknown)."""
    match = re.fullmatch(r"(glibc|musl)(?: (\d+)\.(\d+)(?:\.\d+)*)?", libc)
    if match is None:
        raise LockError(
            f"{where}: libc = {libc!r} is not a C library layerforge knows "
            "(expected e.g. 'glibc 2.36' or 'musl 1.2.5')",
            hint="run `layerforge lock` to record it again",
        )
    family, major, minor = match.groups()
    return family, (int(major), int(minor)) if major is not None else None


def platform_tag(platform: str, libc: str | None, where: str = "the root base") -> str:
    """uv's ``--python-platform`` for a root base (``where``) with C library ``libc`` ("glibc
    2.36", "musl 1.2.5", None: unknown): the highest manylinux tag uv accepts that it runs."""
    if libc is None:
        return PLATFORMS[platform]
    family, version = parse_libc(libc, where)
    arch = ARCHES[platform]
    if family == "musl":
        return f"{arch}-unknown-linux-musl"
    have = version or (0, 0)
    if have < (2, MANYLINUX[0]):
        raise LockError(
            f"{where}: its OS source has {libc}, older than glibc 2.{MANYLINUX[0]}, the "
            "oldest that manylinux wheels are built for",
            hint=f"use a newer OS source in {where} (Debian 9 or later, RHEL/CentOS 7 or later)",
        )
    best = max(m for m in MANYLINUX if have >= (2, m))
    return f"{arch}-manylinux_2_{best}"


@dataclass(frozen=True)
class ResolveOptions:
    upgrade: bool = False
    upgrade_packages: tuple[str, ...] = ()
    upgrade_os: bool = False  # re-read the Debian packages of debootstrap roots (only those)


def compile_argv(
    project: Project, work: Path, options: ResolveOptions, platform: str | None = None
) -> list[str]:
    """``uv pip compile`` of ``work``'s requirements.in/constraints.txt into pylock.toml, for
    ``platform`` (:func:`platform_tag`; None: the project's default)."""
    argv = [
        proc.find_uv(),
        "pip",
        "compile",
        "pyproject.toml" if (work / "pyproject.toml").is_file() else "requirements.in",
        "--constraint",
        "constraints.txt",
        "--python-version",
        project.python,
        "--python-platform",
        platform or uv_platform(project),
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


def install_argv(
    project: Project,
    stage: Path,
    requirements: Path,
    index: str | None = None,
    platform: str | None = None,
) -> list[str]:
    """``uv pip install`` of exactly the hash-pinned ``requirements`` into the prefix ``stage``
    (``index``: the named index they are all pinned to; None: the project's indexes), for
    ``platform`` (the one they were locked for; None: the project's default)."""
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
        platform or uv_platform(project),
        "--link-mode",
        "hardlink",
        "--no-compile",
        "--quiet",
    ]
    return argv + _index_options(project, index)


def _index_options(project: Project, index: str | None = None) -> list[str]:
    if project.indexes:
        return named_index_options(project, index)
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
            size=int(dist.get("size", 0)) or _local_size(url, path.parent),
            kind="wheel" if wheels else "sdist",
        )
    return out


def _local_size(url: str, base: Path) -> int:
    """The size of a wheel uv found in a local directory (``find_links``), which pylock
    leaves out: a ``file://`` URL or a path (relative to the pylock file). 0 if unknown."""
    parsed = urlparse(url)
    if parsed.scheme not in ("", "file"):
        return 0
    local = base / unquote(parsed.path) if parsed.scheme == "" else Path(unquote(parsed.path))
    try:
        return local.stat().st_size if local.is_file() else 0
    except OSError:
        return 0


# -- named indexes ------------------------------------------------------------------------------


def _spec(index: Index) -> str:
    return f"{index.name}={index.url}"


def named_index_options(project: Project, pinned_to: str | None = None) -> list[str]:
    """The index flags of a project with ``[[project.index]]``: for the distributions pinned to
    ``pinned_to``, that index alone; otherwise the default index (or ``index_url``) and every
    non-explicit index, in the manifest's order, and ``find_links``."""
    if pinned_to is not None:
        (index,) = (i for i in project.indexes if i.name == pinned_to)
        return ["--default-index", _spec(index)]
    argv: list[str] = []
    for index in project.indexes:
        if index.default:
            argv += ["--default-index", _spec(index)]
        elif not index.explicit:
            argv += ["--index", _spec(index)]
    if project.index_url:
        argv += ["--index-url", project.index_url]
    for link in project.find_links:
        argv += ["--find-links", str(link)]
    return argv


def write_inputs(work: Path, project: Project, lines: Sequence[str]) -> None:
    """``requirements.in`` for :func:`compile_argv`; with named indexes, the generated
    ``pyproject.toml`` that it reads instead (the requirements plus the indexes and sources)."""
    (work / "requirements.in").write_text("\n".join(lines) + "\n")
    if not (project.indexes or project.sources):
        return
    sourced = {index for _, index in project.sources}
    body = [
        "[project]",
        'name = "layerforge-node"',
        'version = "0"',
        f"dependencies = {json.dumps(list(lines))}",
        "",
        "[tool.uv.sources]",
        *(
            f"{json.dumps(dist)} = {{ index = {json.dumps(index)} }}"
            for dist, index in project.sources
        ),
    ]
    for index in project.indexes:
        if index.default and index.name not in sourced:
            continue  # on the command line (uv pip takes no default from a pyproject)
        body += [
            "",
            "[[tool.uv.index]]",
            f"name = {json.dumps(index.name)}",
            f"url = {json.dumps(index.url)}",
            f"explicit = {'true' if index.explicit or index.default else 'false'}",
        ]
    (work / "pyproject.toml").write_text("\n".join(body) + "\n")


def pinned_indexes(project: Project, packages: dict[str, Package]) -> dict[str, Package]:
    """``packages`` with ``index`` set for those ``[project.sources]`` pins to an index."""
    sources = dict(project.sources)
    return {
        name: replace(pkg, index=sources[name]) if name in sources else pkg
        for name, pkg in packages.items()
    }


def locked_indexes(project: Project) -> tuple[tuple[str, str], ...]:
    """The lock's ``[indexes]`` table: every named index, never credentials (see manifest)."""
    return tuple((i.name, i.url) for i in project.indexes)


_UNAUTHORIZED = re.compile(r"index URL \((\S+?)\) could not be queried due to a lack of valid auth")


def check_auth(project: Project, stderr: str, where: str) -> None:
    """A ResolveError naming the index and its variables when uv got a 401 from it."""
    match = _UNAUTHORIZED.search(stderr)
    if match is None:
        return
    url = match.group(1).rstrip("/")
    named = [i for i in project.indexes if i.url.rstrip("/") == url]
    if not named:
        raise ResolveError(
            f"{where}: the index {url} refused uv (401 Unauthorized: no valid credentials)",
            hint="put its host in a netrc file ($NETRC), or declare it as a [[project.index]] "
            "and set UV_INDEX_<NAME>_USERNAME and UV_INDEX_<NAME>_PASSWORD",
        )
    user, password = credential_variables(named[0].name)
    raise ResolveError(
        f"{where}: index {named[0].name!r} ({url}) refused uv: 401 Unauthorized, no valid "
        "credentials",
        hint=f"set {user} and {password} in the environment, or put the host in a netrc "
        "file (NETRC=path); credentials are never written into the manifest or the lock",
    )
