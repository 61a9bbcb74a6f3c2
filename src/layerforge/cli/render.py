"""Terminal and JSON rendering of events and results (used only by the CLI)."""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import IO, TYPE_CHECKING, Any

from layerforge.events import Event

if TYPE_CHECKING:  # rich is imported only when a terminal reporter is made (not for --json)
    from rich.console import Console
    from rich.progress import TaskID


class JsonLinesReporter:
    """Every event as one JSON line (``--json``), on stderr so stdout stays one document."""

    def __init__(self, stream: IO[str] | None = None, *, level: int = 0) -> None:
        self._stream = stream or sys.stderr
        self._level = level  # -1 (-q): warnings only
        self._lock = threading.Lock()
        self._last_progress: dict[str, float] = {}

    def emit(self, event: Event) -> None:
        if self._level < 0 and event.kind != "warning":
            return
        if event.kind == "progress":
            now = time.monotonic()
            if now - self._last_progress.get(event.task, 0.0) < 0.5:
                return
            self._last_progress[event.task] = now
        doc: dict[str, Any] = {"event": event.kind, "task": event.task}
        if event.message:
            doc["message"] = event.message
        if event.kind == "progress" or event.total is not None:
            doc["done"], doc["total"] = event.done, event.total
        if event.data:
            doc["data"] = event.data
        with self._lock:
            self._stream.write(json.dumps(doc, sort_keys=True) + "\n")
            self._stream.flush()


class RichReporter:
    """Progress bars for byte-counted work, one line per finished step."""

    def __init__(self, console: Console, *, level: int = 0) -> None:
        """``level``: -1 (-q) shows warnings only; 1 (-v) also every step's start and end."""
        from rich.progress import (  # noqa: PLC0415
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TransferSpeedColumn,
        )

        self.console = console
        self._level = level
        self._lock = threading.Lock()
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self._tasks: dict[str, TaskID] = {}
        self._started = False

    def __enter__(self) -> RichReporter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._started:
            self._progress.stop()

    def emit(self, event: Event) -> None:
        if self._level < 0 and event.kind != "warning":
            return
        with self._lock:
            if self._level > 0 and event.kind in ("start", "finish", "info"):
                self._verbose(event)
            self._emit(event)

    def _verbose(self, event: Event) -> None:
        mark = {"start": "→", "finish": "←", "info": "·"}[event.kind]
        ok = event.data.get("ok")
        status = "" if ok is None else (" ok" if ok else " failed")
        message = f": {event.message}" if event.message else ""
        self.console.print(f"[dim]{mark} {event.kind} {event.task}{message}{status}[/]")

    def _emit(self, event: Event) -> None:
        if event.kind == "start":
            if not self._started and self.console.is_terminal:
                self._progress.start()
                self._started = True
            self._tasks[event.task] = self._progress.add_task(
                event.message or event.task, total=event.total
            )
        elif event.kind == "progress" and event.task in self._tasks:
            self._progress.update(self._tasks[event.task], completed=event.done, total=event.total)
        elif event.kind == "finish":
            task = self._tasks.pop(event.task, None)
            if task is not None:
                self._progress.remove_task(task)
            if event.message and event.task.startswith("build:"):
                self.console.print(f"[green]✓[/] {event.task[6:]}: {event.message}")
        elif event.kind == "warning":
            self.console.print(f"[yellow]warning:[/] {event.message}")
        elif event.kind == "info" and event.task in ("gc", "disk"):
            self.console.print(f"[dim]{event.message}[/]")
        elif event.kind == "info" and event.task.startswith("build:"):
            self.console.print(f"[dim]· {event.task[6:]}: {event.message}[/]")
