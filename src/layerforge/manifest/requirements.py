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
class IndexOption:
    """An ``--index-url``/``--extra-index-url``/``--find-links`` line of a requirements file:
    accepted when the manifest says the same (:func:`check_index_options`)."""

    option: str  # the long spelling
    value: str  # as written
    file: Path
    line: int


_OPTION_NAMES = {
    "-i": "--index-url",
    "--index-url": "--index-url",
    "--extra-index-url": "--extra-index-url",
    "-f": "--find-links",
    "--find-links": "--find-links",
}


@dataclass(frozen=True)
class Requirements:
    """Validated requirement lines and where they came from (for messages and keys)."""

    lines: tuple[str, ...]
    origin: str  # "inline" or a path relative to the manifest directory
    files: tuple[Path, ...] = ()  # absolute paths read (their content feeds the lock check)
    constraints: tuple[str, ...] = ()  # `-c FILE` lines of a requirements file (uv --constraint)
    options: tuple[IndexOption, ...] = ()  # index options met in the files, checked by parse

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
    read = _FileRead(confine)
    lines = tuple(read.requirements(path))
    return Requirements(
        lines, value, tuple(read.files), tuple(read.constraints), tuple(read.options)
    )


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


def logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, text) of each logical line: ``\\`` continuations joined, comments
    (`` #`` or a leading ``#``) removed, blank lines skipped."""
    out: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        if not pending:
            start = number
        line = raw.split(" #", 1)[0].rstrip()
        if line.lstrip().startswith("#"):
            line = ""
        if line.endswith("\\"):
            pending.append(line[:-1])
            continue
        joined = " ".join(p.strip() for p in [*pending, line] if p.strip())
        pending = []
        if joined:
            out.append((start, joined))
    if pending:
        out.append((start, " ".join(p.strip() for p in pending if p.strip())))
    return out


def strip_hashes(line: str) -> str:
    """``line`` without its ``--hash=ALG:HEX`` options (the lock pins sha256 itself)."""
    words = line.split()
    kept: list[str] = []
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word == "--hash":
            skip = True
        elif not word.startswith("--hash="):
            kept.append(word)
    return " ".join(kept)


def split_option(line: str) -> tuple[str, str]:
    """``-r FILE`` / ``--requirement=FILE`` -> (option as written, value)."""
    name, sep, value = line.partition("=") if line.startswith("--") else ("", "", "")
    if sep and " " not in name:
        return name, value.strip()
    head, _, rest = line.partition(" ")
    if head.startswith("-") and not head.startswith("--") and len(head) > 2 and not rest:
        return head[:2], head[2:]  # -rfile
    return head, rest.strip()


class _FileRead:
    """One walk over a requirements file and its ``-r``/``-c`` includes."""

    def __init__(self, confine: Confinement) -> None:
        self.confine = confine
        self.files: list[Path] = []
        self.seen: set[Path] = set()
        self.constraints: list[str] = []
        self.options: list[IndexOption] = []

    def include(self, path: Path, written: str, where: str) -> Path:
        included = self.confine.resolve(
            written, base=path.parent, file=str(path), key=where, what="included file"
        )
        if not included.is_file():
            raise ManifestError(
                f"included file {included} does not exist", file=str(path), key=where
            )
        return included

    def requirements(self, path: Path) -> list[str]:
        if path in self.seen:
            return []
        self.seen.add(path)
        self.files.append(path)
        out: list[str] = []
        quote = looks_like_requirements(path)
        for number, line in logical_lines(_read_text(path, str(path))):
            where = f"line {number}"
            if not line.startswith("-"):
                out.append(parse_line(strip_hashes(line), file=str(path), key=where, quote=quote))
                continue
            option, value = split_option(line)
            if option in ("-r", "--requirement"):
                out.extend(self.requirements(self.include(path, value, where)))
            elif option in ("-c", "--constraint"):
                self.constraints.extend(self.requirements(self.include(path, value, where)))
            elif option in _OPTION_NAMES and value:
                self.options.append(IndexOption(_OPTION_NAMES[option], value, path, number))
            else:
                raise ManifestError(
                    f"option {option!r} is not supported in requirement files"
                    if quote
                    else "an option line, not supported (the line is not shown: the file's "
                    "name does not say it holds requirements)",
                    file=str(path),
                    key=where,
                    hint="requirement files may hold -r, -c, --hash, --index-url, "
                    "--extra-index-url and --find-links; set other uv options under [project] "
                    "in layerforge.toml",
                )
        return out


def check_index_options(
    requirements: Requirements,
    *,
    index_urls: tuple[str, ...],
    default_url: str | None,
    find_links: tuple[Path, ...],
) -> None:
    """Each index option of a requirements file must say what the manifest says: an
    ``--index-url`` is the default index, an ``--extra-index-url`` one of the indexes, a
    ``--find-links`` one of ``find_links`` (the manifest, not the file, is what uv is given)."""
    for opt in requirements.options:
        where = f"line {opt.line}"
        if opt.option == "--find-links":
            local = not _is_url(opt.value)
            target = (opt.file.parent / opt.value).resolve() if local else None
            if target is not None and target in find_links:
                continue
            raise ManifestError(
                f"--find-links {opt.value} is not in the manifest's find_links",
                file=str(opt.file),
                key=where,
                hint=f"add {opt.value!r} (relative to layerforge.toml) to find_links under "
                "[project] in layerforge.toml, or remove the line",
            )
        url = _norm(opt.value)
        if opt.option == "--index-url" and default_url is not None and url == _norm(default_url):
            continue
        if opt.option == "--extra-index-url" and url in {_norm(u) for u in index_urls}:
            continue
        wanted = (
            "the default index (index_url, or a [[project.index]] with default = true)"
            if opt.option == "--index-url"
            else "a [[project.index]]"
        )
        raise ManifestError(
            f"{opt.option} {opt.value} is not {wanted} of the manifest",
            file=str(opt.file),
            key=where,
            hint=f"declare it in layerforge.toml as {wanted} "
            f'([[project.index]] name = "...", url = "{opt.value}"), or remove the line',
        )


def _is_url(value: str) -> bool:
    return "://" in value


def _norm(url: str) -> str:
    return url.rstrip("/")
