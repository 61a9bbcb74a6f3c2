"""Read PEP 508 requirement lines from inline lists, requirements files and pyproject.toml."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from layerforge.errors import ManifestError


@dataclass(frozen=True)
class Requirements:
    """Validated requirement lines and where they came from (for messages and keys)."""

    lines: tuple[str, ...]
    origin: str  # "inline" or a path relative to the manifest directory
    files: tuple[Path, ...] = ()  # absolute paths read (their content feeds the lock check)

    def names(self) -> dict[str, Requirement]:
        return {canonicalize_name(r.name): r for r in map(Requirement, self.lines)}


def parse_line(line: str, *, file: str, key: str) -> str:
    try:
        req = Requirement(line)
    except InvalidRequirement as exc:
        raise ManifestError(
            f"invalid requirement {line!r}: {exc}",
            file=file,
            key=key,
            hint="write a PEP 508 requirement such as 'numpy==2.1.*' or 'fastapi>=0.110'",
        ) from None
    if req.url:
        raise ManifestError(
            f"direct URL requirements are not supported: {line!r}",
            file=file,
            key=key,
            hint="publish the package to an index or a --find-links directory",
        )
    return str(req)


def read_requirements(
    value: str | tuple[str, ...] | None, *, root: Path, manifest: str, key: str
) -> Requirements:
    if value is None:
        return Requirements((), "none")
    if isinstance(value, tuple):
        lines = tuple(parse_line(v, file=manifest, key=key) for v in value)
        return Requirements(lines, "inline")
    path = (root / value).resolve()
    if not path.is_file():
        raise ManifestError(
            f"requirements file {value!r} does not exist (looked for {path})",
            file=manifest,
            key=key,
            hint="fix the path (relative to layerforge.toml) or list requirements inline",
        )
    if path.name == "pyproject.toml":
        return Requirements(_from_pyproject(path, value), value, (path,))
    files: list[Path] = []
    lines = tuple(_from_requirements_file(path, files, seen=set()))
    return Requirements(lines, value, tuple(files))


def _from_pyproject(path: Path, shown: str) -> tuple[str, ...]:
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"invalid TOML: {exc}", file=shown) from None
    deps = data.get("project", {}).get("dependencies", [])
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise ManifestError(
            "[project].dependencies must be a list of strings", file=shown, key="project"
        )
    return tuple(parse_line(d, file=shown, key="project.dependencies") for d in deps)


def _from_requirements_file(path: Path, files: list[Path], seen: set[Path]) -> list[str]:
    if path in seen:
        return []
    seen.add(path)
    files.append(path)
    out: list[str] = []
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        where = f"line {number}"
        if line.startswith(("-r ", "--requirement ")):
            included = path.parent / line.split(None, 1)[1].strip()
            if not included.is_file():
                raise ManifestError(
                    f"included file {included} does not exist", file=str(path), key=where
                )
            out.extend(_from_requirements_file(included.resolve(), files, seen))
            continue
        if line.startswith("-"):
            raise ManifestError(
                f"option {line.split()[0]!r} is not supported in requirement files",
                file=str(path),
                key=where,
                hint="set index_url / find_links under [project] in layerforge.toml instead",
            )
        out.append(parse_line(line, file=str(path), key=where))
    return out
