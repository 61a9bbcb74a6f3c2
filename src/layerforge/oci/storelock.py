"""The store lock: ``gc`` never removes what a running build, push or verify uses.

A ``flock`` on ``STORE/layerforge/store.lock`` (our bookkeeping directory, where no OCI reader
looks). Every verb that writes blobs, or reads tags and then references what they reach
(``build``, ``lock``, ``push``, ``verify``, ``export archive``), holds it shared for its whole
run; store ``gc`` holds it exclusively, so it never removes a blob that a build has written but
not tagged yet. The kernel drops the lock with its process, also on ``kill -9``; child
processes do not inherit it (close-on-exec).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from layerforge.errors import StoreError

LOCK_FILE = ("layerforge", "store.lock")
POLL = 0.25  # seconds between tries of a waiting exclusive lock


def _open(root: Path) -> int | None:
    path = root.joinpath(*LOCK_FILE)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except PermissionError:  # a store this user may only read: lock it read-only
        try:
            return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None  # never used by a layerforge that locks: no gc to wait for


@contextlib.contextmanager
def shared(root: Path) -> Iterator[None]:
    """Hold the lock of the store at ``root`` shared for the body (waits while a gc runs)."""
    fd = _open(root)
    try:
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        if fd is not None:
            os.close(fd)  # releases the lock


@contextlib.contextmanager
def exclusive(
    root: Path, *, timeout: float | None = None, on_wait: Callable[[], None] | None = None
) -> Iterator[None]:
    """Hold the lock exclusively for the body. While others hold it, call ``on_wait`` once and
    wait, at most ``timeout`` seconds (None: as long as it takes); then a StoreError."""
    fd = _open(root)
    if fd is None:
        raise StoreError(
            f"cannot create the lock file {root.joinpath(*LOCK_FILE)}",
            hint="run gc as a user that may write to the store",
        )
    try:
        _wait(fd, root, timeout, on_wait)
        yield
    finally:
        os.close(fd)


def _try(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _wait(fd: int, root: Path, timeout: float | None, on_wait: Callable[[], None] | None) -> None:
    deadline = None if timeout is None else time.monotonic() + timeout
    if _try(fd):
        return
    if on_wait is not None:
        on_wait()
    while not _try(fd):
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise StoreError(
                f"the store {root} is in use: a build, push or verify holds its lock",
                hint="run gc again when it has finished, or let it wait longer (--wait SECONDS)",
            )
        time.sleep(POLL if left is None else min(POLL, left))
