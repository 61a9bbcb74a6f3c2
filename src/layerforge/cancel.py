"""Stopping work promptly on Ctrl-C.

Python delivers ``KeyboardInterrupt`` to the main thread only. Work running in pool threads
(installs, layer writes, sandbox steps) would otherwise carry on until it finished, and the
interpreter waits for those threads before it exits: an interrupted cold build of a torch
base kept downloading and compressing for minutes. The main thread calls :func:`request`;
workers notice it in their loops (:func:`check`) and every program started through
:mod:`layerforge.cmd` is terminated. Atomic writes keep the store valid whatever stops where.
"""

from __future__ import annotations

import threading

_REQUESTED = threading.Event()


def request() -> None:
    """Ask every worker to stop (and terminate the programs they run)."""
    _REQUESTED.set()
    from layerforge import cmd  # noqa: PLC0415 - cmd imports nothing of ours but errors

    cmd.terminate_all()


def requested() -> bool:
    return _REQUESTED.is_set()


def check() -> None:
    """Raise KeyboardInterrupt in a worker once a stop was requested."""
    if _REQUESTED.is_set():
        raise KeyboardInterrupt


def reset() -> None:
    """For a library caller (and tests) that goes on after an interrupted operation."""
    _REQUESTED.clear()
