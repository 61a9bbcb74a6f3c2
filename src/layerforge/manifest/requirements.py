"""Read PEP 508 requirement lines from inline lists, requirements files and pyproject.toml."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from layerforge.errors import ManifestError
from layerforge.manifest.confine import Confinement

# A file whose name says it holds requirements; the lines of any other file (say a secret that
# a typo named) are never quoted in an error.
_REQUIREMENTS_SUFFIXES = (".txt", ".in", ".pip")


@dataclass(frozen=True)
class Requirements:
    """Validated requirement lines and where they came from (for messages and keys)."""

    lines: tuple[str, ...]
    origin: str  # "inline" or a path relative to the manifest directory
    files: tuple[Path, ...] = ()  # absolute paths read (their content feeds the lock check)

    def names(self) -> dict[str, Requirement]:
        return {canonicalize_name(r.name): r for r in map(Requirement, self.lines)}


def looks_like_requirements(path: Path) -> bool:
    """Whether the content of ``path`` may be quoted in an error message."""
    return path.suffix in _REQUIREMENTS_SUFFIXES or "requirements" in path.name


def parse_line(line: str, *, file: str, key: str, quote: bool = True) -> str:
    try:
        req = Requirement(line)
    except InvalidRequirement as exc:
        raise ManifestError(
            f"invalid requirement {line!r}: {exc}"
            if quote
            else "not a PEP 508 requirement (the line is not shown: the file's name does not "
            "say it holds requirements)",
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
    value: str | tuple[str, ...] | None,
    *,
    root: Path,
    manifest: str,
    key: str,
    confine: Confinement | None = None,
) -> Requirements:
    """Inline lines, or the file ``value`` names (relative to ``root``), which must lie inside
    ``confine`` (default: inside ``root``), as must every file it includes."""
    if value is None:
        return Requirements((), "none")
    if isinstance(value, tuple):
        lines = tuple(parse_line(v, file=manifest, key=key) for v in value)
        return Requirements(lines, "inline")
    confine = confine or Confinement(root.resolve())
    path = confine.resolve(value, base=root, file=manifest, key=key, what="requirements file")
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
    lines = tuple(_from_requirements_file(path, files, seen=set(), confine=confine))
    return Requirements(lines, value, tuple(files))


def _from_pyproject(path: Path, shown: str) -> tuple[str, ...]:
    try:
        data = tomllib.loads(_read_text(path, shown))
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"invalid TOML: {exc}", file=shown) from None
    deps = data.get("project", {}).get("dependencies", [])
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise ManifestError(
            "[project].dependencies must be a list of strings", file=shown, key="project"
        )
    return tuple(parse_line(d, file=shown, key="project.dependencies") for d in deps)


def _read_text(path: Path, shown: str) -> str:
    try:
        return path.read_bytes().decode()
    except UnicodeDecodeError as exc:
        raise ManifestError(
            f"not UTF-8 text (byte {exc.start} cannot be decoded)",
            file=shown,
            hint="save the file as UTF-8",
        ) from None
    except OSError as exc:
        raise ManifestError(f"cannot be read: {exc.strerror}", file=shown) from None


def _from_requirements_file(
    path: Path, files: list[Path], seen: set[Path], *, confine: Confinement
) -> list[str]:
    if path in seen:
        return []
    seen.add(path)
    files.append(path)
    out: list[str] = []
    quote = looks_like_requirements(path)
    for number, raw in enumerate(_read_text(path, str(path)).splitlines(), start=1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        where = f"line {number}"
        if line.startswith(("-r ", "--requirement ")):
            written = line.split(None, 1)[1].strip()
            included = confine.resolve(
                written, base=path.parent, file=str(path), key=where, what="included file"
            )
            if not included.is_file():
                raise ManifestError(
                    f"included file {included} does not exist", file=str(path), key=where
                )
            out.extend(_from_requirements_file(included, files, seen, confine=confine))
            continue
        if line.startswith("-"):
            raise ManifestError(
                f"option {line.split()[0]!r} is not supported in requirement files"
                if quote
                else "an option line, not supported (the line is not shown: the file's name "
                "does not say it holds requirements)",
                file=str(path),
                key=where,
                hint="set index_url / find_links under [project] in layerforge.toml instead",
            )
        out.append(parse_line(line, file=str(path), key=where, quote=quote))
    return out
