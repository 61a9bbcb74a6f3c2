"""A disk that fills up in the middle of a command, as an error a user can act on.

The disk preflight (:mod:`layerforge.builder.disk`) refuses a build that cannot fit before it
writes anything, but it cannot foresee everything: what a run step writes, another process
filling the same disk, a push or pull of a remote cache hit. When a write then fails with
ENOSPC (or EDQUOT), the bare "No space left on device" names no path. :func:`disk_full_error`
turns it into a :class:`~layerforge.errors.DiskFullError` that says which area filled up
(the store or the cache directory, and where), how much each one has left, and what to do.

It recognises the OSError anywhere in the exception's chain (``raise X from exc`` and
``except: raise X`` keep it), and a tool's output that says so (tar, cp, apt, uv...).
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from layerforge.errors import DiskFullError
from layerforge.sizes import format_size

FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
FULL_TEXTS = (os.strerror(errno.ENOSPC), os.strerror(errno.EDQUOT))


def full_disk_cause(exc: BaseException) -> OSError | str | None:
    """The ENOSPC/EDQUOT OSError in ``exc``'s chain, else ``exc``'s text if a tool's output in
    it says the disk is full, else None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in FULL_ERRNOS:
            return current
        current = current.__cause__ or current.__context__
    text = str(exc)
    return text if any(t in text for t in FULL_TEXTS) else None


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _free(path: Path) -> tuple[int, int] | None:
    """(device, free bytes) of the filesystem holding ``path`` (or its first existing parent)."""
    try:
        where = _existing(path)
        return os.stat(where).st_dev, shutil.disk_usage(where).free
    except OSError:
        return None


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _failed_path(cause: OSError | str) -> Path | None:
    if not isinstance(cause, OSError):
        return None
    filename = cause.filename2 if cause.filename2 is not None else cause.filename
    return Path(os.fsdecode(filename)).absolute() if filename is not None else None


def _free_space(areas: Sequence[tuple[str, Path]], *, point: bool) -> list[str]:
    """ "the NAME DIR (N free)" for each area; with ``point``, the fullest one is marked."""
    found: dict[str, tuple[int, int]] = {}
    for name, root in areas:
        if (device_free := _free(root)) is not None:
            found[name] = device_free
    fullest = min(found.values(), key=lambda f: f[1]) if found else None
    point = point and len({device for device, _ in found.values()}) > 1
    out = []
    devices: dict[int, str] = {}
    for name, root in areas:
        if name not in found:
            continue
        device, amount = found[name]
        note = f", the filesystem of the {devices[device]}" if device in devices else ""
        if point and found[name] == fullest:
            note += ", the fullest"
        devices.setdefault(device, name)
        out.append(f"the {name} {root} ({format_size(amount)} free{note})")
    return out


def disk_full_error(cause: OSError | str, areas: Sequence[tuple[str, Path]]) -> DiskFullError:
    """The error for ``cause`` (from :func:`full_disk_cause`); ``areas``: (name, directory)
    of what the command writes to, e.g. ``[("store", STORE), ("cache", CACHE_DIR)]``."""
    path = _failed_path(cause)
    owner = next((name for name, root in areas if path is not None and _inside(path, root)), None)
    message = "no space left on the device"
    if path is not None:
        message += f" writing {path}" + (f" (in the {owner})" if owner else "")
    free = _free_space(areas, point=path is None)  # no file named: point at the likely culprit
    if path is not None and owner is None and (elsewhere := _free(path)) is not None:
        free.append(f"{_existing(path)} ({format_size(elsewhere[1])} free)")
    if free:
        message += "; free space: " + ", ".join(free)
    if isinstance(cause, str):
        message += f"\n{cause}"
    return DiskFullError(
        message,
        path=str(path) if path is not None else None,
        hint="make room: `layerforge gc` removes the images no tag reaches and the cache "
        "entries no known store uses (`gc --all-caches` also the downloads and system "
        "layers), or put the store or the cache on a larger filesystem (--store DIR, "
        "--cache-dir DIR)",
    )
