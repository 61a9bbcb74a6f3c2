"""Paths a manifest names stay inside the project directory, as Docker confines COPY to its
build context.

Every path that ``layerforge.toml`` names and whose files layerforge reads or puts into an
image (a service ``source``, a base ``context``, requirements files and their ``-r``
includes, ``pyproject.toml``, ``find_links``, ``rootfs:``) must resolve, after symlinks, inside
the directory holding the manifest, or inside one of the directories that
``[project] allow_outside`` lists. ``/`` can never be allowed. ``oci:`` layouts are images, not
files copied into one (like a ``FROM`` of a local image), and are not confined.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from layerforge.errors import ManifestError

ALLOW_KEY = "project.allow_outside"


@dataclass(frozen=True)
class Confinement:
    """The project directory and the extra directories outside it that may be named."""

    root: Path  # resolved
    allowed: tuple[Path, ...] = ()  # resolved, each outside ``root``

    def contains(self, path: Path) -> bool:
        return any(path.is_relative_to(d) for d in (self.root, *self.allowed))

    def resolve(self, written: str, *, base: Path, file: str, key: str, what: str) -> Path:
        """``written`` (relative to ``base``, or absolute), symlinks resolved; a ManifestError
        naming ``file`` and ``key`` if it leads outside the project."""
        path = (base / written).resolve()
        if not self.contains(path):
            raise ManifestError(
                f"{what} {written!r} is outside the project directory {self.root} "
                f"(it resolves to {path})",
                file=file,
                key=key,
                hint="move it into the project (next to layerforge.toml), or list the directory "
                f"holding it in {ALLOW_KEY} = [...] if it must stay outside",
            )
        return path


def confinement(root: Path, allow_outside: tuple[str, ...], *, file: str) -> Confinement:
    """Check ``[project] allow_outside`` (each an existing directory, never ``/`` nor a
    directory that holds the project) and return the confinement it describes."""
    allowed: list[Path] = []
    for written in allow_outside:
        path = (root / written).resolve()
        if path == Path(path.anchor) or root.is_relative_to(path):
            raise ManifestError(
                f"{written!r} resolves to {path}, which holds the project directory"
                + (" (the file system root)" if path == Path(path.anchor) else ""),
                file=file,
                key=ALLOW_KEY,
                hint="list only the directories outside the project that the manifest names, "
                "e.g. allow_outside = ['../shared-libs']",
            )
        if not path.is_dir():
            raise ManifestError(
                f"{written!r} is not a directory (looked for {path})",
                file=file,
                key=ALLOW_KEY,
                hint="list existing directories, relative to layerforge.toml",
            )
        if not path.is_relative_to(root):
            allowed.append(path)
    return Confinement(root, tuple(allowed))
