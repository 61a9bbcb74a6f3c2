"""Remove what an earlier ``export dockerfiles`` wrote that the current export no longer does.

A node removed from the manifest (or renamed) leaves ``DIR/NODE/`` behind; a node whose
requirements became empty leaves its ``requirements.txt``. Only files layerforge writes are
candidates, recognised by name *and* content: ``Dockerfile``, ``Dockerfile.dockerignore``,
``requirements.txt`` and ``DIR/.gitignore`` must start with our generated banner;
``rootfs.tar.gz`` (and its ``.rootfs.tar.gz.tmp``) only beside a Dockerfile that does. A
node directory is removed once nothing else is in it; a user's file keeps it (and itself).
"""

from __future__ import annotations

from pathlib import Path

from layerforge.export.common import generated_mark
from layerforge.export.dockerfile import REQUIREMENTS, ROOTFS

GENERATED = ("Dockerfile", "Dockerfile.dockerignore", REQUIREMENTS)
BANNER_LINES = 3  # the mark is within the first lines (a Dockerfile starts with `# syntax=`)


def ours(path: Path) -> bool:
    """A regular file whose first lines carry the mark of ``export dockerfiles``."""
    if path.is_symlink() or not path.is_file():
        return False
    try:
        with path.open("rb") as fh:
            head = fh.read(4096).decode("utf-8", errors="replace")
    except OSError:
        return False
    mark = generated_mark("dockerfiles")
    return any(line.startswith(mark) for line in head.splitlines()[:BANNER_LINES])


def stale(directory: Path, keep: set[Path]) -> list[Path]:
    """Files under ``directory`` that an export wrote and ``keep`` does not list."""
    if not directory.is_dir() or directory.is_symlink():
        return []
    out = [p for p in [directory / ".gitignore"] if p not in keep and ours(p)]
    for sub in sorted(directory.iterdir()):
        if sub.is_symlink() or not sub.is_dir():
            continue
        out += [sub / n for n in GENERATED if sub / n not in keep and ours(sub / n)]
        if ours(sub / "Dockerfile"):
            out += [
                p
                for p in (sub / ROOTFS, sub / f".{ROOTFS}.tmp")
                if p not in keep and p.is_file() and not p.is_symlink()
            ]
    return out


def prune(directory: Path, keep: set[Path]) -> list[Path]:
    """Remove :func:`stale` files, then node directories left empty; returns both."""
    files = stale(directory, keep)
    emptied = sorted({p.parent for p in files if p.parent != directory})
    for path in files:
        path.unlink(missing_ok=True)
    removed_dirs = []
    for sub in emptied:
        if not any(sub.iterdir()):
            sub.rmdir()
            removed_dirs.append(sub)
    return [*files, *removed_dirs]
