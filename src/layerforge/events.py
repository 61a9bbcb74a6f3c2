"""The progress channel: the core reports, the CLI renders.

Core code never prints. It calls ``reporter.emit(Event(...))`` and the CLI decides
whether that becomes a rich progress bar, a line of text, or a JSON line.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal, Protocol

EventKind = Literal["start", "progress", "finish", "info", "warning"]


@dataclass(frozen=True)
class Event:
    """One thing that happened. ``task`` names a unit of work, e.g. ``build:cpu/layer:deps``."""

    kind: EventKind
    task: str
    message: str = ""
    done: int = 0
    total: int | None = None
    data: dict[str, object] = field(default_factory=dict)


class Reporter(Protocol):
    def emit(self, event: Event) -> None: ...


class NullReporter:
    """Discards every event (library use, tests)."""

    def emit(self, event: Event) -> None:
        pass


class ListReporter:
    """Keeps every event (tests)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._lock = threading.Lock()

    def emit(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)


class CallbackReporter:
    def __init__(self, callback: Callable[[Event], None]) -> None:
        self._callback = callback
        self._lock = threading.Lock()

    def emit(self, event: Event) -> None:
        with self._lock:
            self._callback(event)


@contextmanager
def step(
    reporter: Reporter, task: str, message: str = "", total: int | None = None
) -> Iterator[None]:
    """Emit start/finish around a block; the finish event carries ``ok``."""
    reporter.emit(Event("start", task, message, total=total))
    ok = False
    try:
        yield
        ok = True
    finally:
        reporter.emit(Event("finish", task, message, data={"ok": ok}))
