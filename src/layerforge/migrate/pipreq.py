"""The pip requirements files a migration refers to, walked through their ``-r``/``-c``
includes for what the manifest must say too (index options) and for lines no manifest can
hold (editable installs, paths, URLs)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from layerforge.manifest.requirements import logical_lines, split_option, strip_hashes


@dataclass
class PipScan:
    files: list[Path] = field(default_factory=list)
    indexes: list[tuple[str, str, Path, int]] = field(default_factory=list)  # option, value
    problems: list[tuple[Path, int, str, str]] = field(default_factory=list)  # text, why
    hashes: int = 0  # lines whose --hash options the lock replaces


_LONG = {"-i": "--index-url", "-f": "--find-links"}


def scan(path: Path, out: PipScan | None = None) -> PipScan:
    out = out or PipScan()
    if path in out.files or not path.is_file():
        return out
    out.files.append(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        out.problems.append((path, 0, "", "cannot be read as text"))
        return out
    for number, written in logical_lines(text):
        line = strip_hashes(written)
        out.hashes += line != written
        if not line.startswith("-"):
            if "://" in line or line.startswith((".", "/")):
                out.problems.append((path, number, line, "a path or URL requirement"))
            continue
        option, value = split_option(line)
        option = _LONG.get(option, option)
        if option in ("-r", "--requirement", "-c", "--constraint"):
            scan((path.parent / value).resolve(), out)
        elif option in ("--index-url", "--extra-index-url", "--find-links"):
            out.indexes.append((option, value, path, number))
        else:
            out.problems.append((path, number, line, f"the option {option} has no manifest key"))
    return out
