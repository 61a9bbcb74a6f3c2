"""Before/after diff of two root filesystems, as the entries of one layer.

New and changed paths become entries (with their parent directories, at their real modes);
paths gone from ``after`` become whiteouts ``.wh.NAME`` (one for a whole deleted
directory). Caches and logs never reach the layer: apt lists and archives, pip/uv caches,
``/var/log``, ``/tmp``, ``__pycache__`` directories, and the mount points of the run.

A file counts as unchanged when type, mode, owner, size and mtime are the same (``cp -a``
keeps them; anything that rewrites a file moves its mtime), or when its bytes are equal.
"""

from __future__ import annotations

import filecmp
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from layerforge.oci.tarball import Entry

EXCLUDED_DIRS = (
    "var/lib/apt/lists",
    "var/cache/apt",
    "var/cache/debconf/tmp",
    "var/log",
    "tmp",
    "var/tmp",
    "run",
    "proc",
    "dev",
    "sys",
    "root/.cache",
)
EXCLUDED_FILES = (
    "var/cache/ldconfig/aux-cache",
    "var/cache/debconf/config.dat-old",
    "var/cache/debconf/templates.dat-old",
    "var/lib/dpkg/status-old",
    "var/lib/dpkg/diversions-old",
    "etc/machine-id",
)


def excluded(rel: str, skip: frozenset[str] = frozenset()) -> bool:
    """True for what must never reach a layer (``rel`` relative to the root, no slash)."""
    if rel in skip or rel in EXCLUDED_FILES:
        return True
    parts = rel.split("/")
    if "__pycache__" in parts:
        return True
    return any(rel == d or rel.startswith(d + "/") for d in EXCLUDED_DIRS)


def _walk(root: Path, skip: frozenset[str]) -> dict[str, os.stat_result]:
    found: dict[str, os.stat_result] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        rel_dir = "" if rel_dir == "." else rel_dir
        keep = []
        for name in dirnames:
            rel = f"{rel_dir}/{name}" if rel_dir else name
            if excluded(rel, skip):
                continue
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            found[rel] = st
            if stat.S_ISDIR(st.st_mode):
                keep.append(name)
        dirnames[:] = keep
        for name in filenames:
            rel = f"{rel_dir}/{name}" if rel_dir else name
            if not excluded(rel, skip):
                found[rel] = os.lstat(os.path.join(dirpath, name))
    return found


def _same(before: Path, after: Path, rel: str, a: os.stat_result, b: os.stat_result) -> bool:
    meta = (a.st_mode, a.st_uid, a.st_gid) == (b.st_mode, b.st_uid, b.st_gid)
    if not meta or stat.S_ISDIR(a.st_mode):
        return meta
    if stat.S_ISLNK(a.st_mode):
        return os.readlink(before / rel) == os.readlink(after / rel)
    if not stat.S_ISREG(a.st_mode):
        return a.st_rdev == b.st_rdev
    if a.st_size != b.st_size:
        return False
    return a.st_mtime_ns == b.st_mtime_ns or filecmp.cmp(before / rel, after / rel, shallow=False)


def _entry(
    after: Path, rel: str, st: os.stat_result, first_of: dict[tuple[int, int], str]
) -> Entry | None:
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISDIR(st.st_mode):
        return Entry(rel, "dir", mode)
    if stat.S_ISLNK(st.st_mode):
        return Entry(rel, "symlink", 0o777, linkname=os.readlink(after / rel))
    if not stat.S_ISREG(st.st_mode):
        return None  # devices, fifos, sockets never belong in a layer
    if st.st_nlink > 1:
        ino = (st.st_dev, st.st_ino)
        if ino in first_of:
            return Entry(rel, "hardlink", mode, linkname=first_of[ino])
        first_of[ino] = rel
    return Entry(rel, "file", mode, st.st_size, source=after / rel)


def _whiteouts(gone: Iterable[str]) -> list[Entry]:
    """One whiteout per deleted subtree (the topmost deleted path)."""
    out: list[Entry] = []
    removed: set[str] = set()
    for rel in sorted(gone):
        parent = rel.rsplit("/", 1)[0] if "/" in rel else ""
        if any(parent == r or parent.startswith(r + "/") for r in removed):
            continue
        removed.add(rel)
        head, _, name = rel.rpartition("/")
        path = f"{head}/.wh.{name}" if head else f".wh.{name}"
        out.append(Entry(path, "file", 0o644, 0, data=b""))
    return out


def diff_trees(before: Path, after: Path, skip: Iterable[str] = ()) -> list[Entry]:
    """The entries of a layer that turns ``before`` into ``after``."""
    skipped = frozenset(s.strip("/") for s in skip)
    old = _walk(before, skipped)
    new = _walk(after, skipped)
    changed = [
        rel
        for rel, st in sorted(new.items())
        if rel not in old or not _same(before, after, rel, old[rel], st)
    ]
    wanted: set[str] = set(changed)
    for rel in changed:  # parent directories at their real modes, not a default 0755
        parts = rel.split("/")
        wanted.update("/".join(parts[:i]) for i in range(1, len(parts)))
    first_of: dict[tuple[int, int], str] = {}
    entries: list[Entry] = []
    for rel in sorted(wanted):
        entry = _entry(after, rel, new[rel], first_of)
        if entry is not None:
            entries.append(entry)
    return entries + _whiteouts(rel for rel in old if rel not in new)
