"""Verify as the image's user: its writable directories writable, as in a container.

verify mounts the image read-only (its unpacked layers are a shared cache), where nothing is
writable, to root or to anyone. A container's root filesystem is writable by permissions:
so each directory the user is meant to write (its home, the ``writable`` paths of the node
and its bases) is copied, with its owner, mode and content, to a scratch directory mounted
over it for the run. Whether the user can write there is then decided by the owner and mode
the image gave it, which is what the checks are about.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from layerforge.manifest.nonroot import User
from layerforge.sandbox.runner import Mount

ONE_UID_WARNING = (
    "running the checks as uid {uid} in a one-uid user namespace (layerforge is not root): "
    "file ownership is not checked; run as root (as CI does) to check it"
)


def _source_of(rootfs: Path, mounts: Sequence[Mount], path: str) -> Path | None:
    """The host directory that shows at ``path`` in the view (under the deepest mount that
    holds it, else in the root filesystem); None when a component is a symlink or missing
    (the directory is then not made writable: its check fails, as it should)."""
    parts = [p for p in path.split("/") if p]
    base, rest = rootfs, parts
    for m in mounts:
        target = [p for p in m.target.split("/") if p]
        if parts[: len(target)] == target and len(parts) - len(target) < len(rest):
            base, rest = m.source, parts[len(target) :]
    current = base
    for part in rest:
        current = current / part
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            return None
        if not stat.S_ISDIR(st.st_mode):
            return None
    return current


def _copy_owned(source: Path, target: Path) -> None:
    """``source``'s content, modes and owners into the (empty) directory ``target``."""
    shutil.copytree(source, target, symlinks=True, dirs_exist_ok=True)
    for dirpath, dirnames, filenames in os.walk(source):
        for name in ["", *dirnames, *filenames]:
            src = Path(dirpath) / name if name else Path(dirpath)
            dst = target / src.relative_to(source)
            st = os.lstat(src)
            with contextlib.suppress(PermissionError):
                os.lchown(dst, st.st_uid, st.st_gid)
            if not stat.S_ISLNK(st.st_mode):
                os.chmod(dst, stat.S_IMODE(st.st_mode))


def hand_over(mounts: Sequence[Mount], user: User | None) -> None:
    """The bytecode directories of verify (a scratch one, the shared trees) given to the
    user the checks run as, so that Python writes the bytecode of what they import there
    (a check may read it: gpu's checks its magic number). Subdirectories a root run made
    stay root's: Python then only reads them. Not root: the user namespace maps the
    caller's files to the user already."""
    if user is None or os.geteuid() != 0:
        return
    for mount in mounts:
        os.chown(mount.source, user.uid, user.gid)


@contextmanager
def writable_mounts(
    rootfs: Path, mounts: Sequence[Mount], user: User | None, paths: Sequence[str]
) -> Iterator[tuple[Mount, ...]]:
    """Writable copies of the user's home and of ``paths``, to mount over them."""
    wanted = list(dict.fromkeys([*([user.home] if user is not None else []), *paths]))
    made: list[Path] = []
    out: list[Mount] = []
    try:
        for path in wanted:
            source = _source_of(rootfs, mounts, path)
            if source is None:
                continue
            scratch = Path(tempfile.mkdtemp(prefix="layerforge-writable-"))
            made.append(scratch)
            _copy_owned(source, scratch)
            out.append(Mount(scratch, "/" + path.strip("/")))
        yield tuple(out)
    finally:
        for scratch in made:
            shutil.rmtree(scratch, ignore_errors=True)
