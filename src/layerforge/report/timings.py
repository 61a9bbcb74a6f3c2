"""Build timings: per node and per step, collected from the events a build emits.

:class:`TimingReporter` wraps any reporter (rich, JSON lines): it passes every event on and
times each task from its ``start`` to its ``finish`` event. Tasks are named by the build
(``build:NODE``, ``install:NODE``, ``layer:NODE:LABEL``, ``source:...``, ``layer:venv``); a
task that names no node belongs to the node being built on the thread that emitted it.

``phase:NAME`` tasks (``load``, ``prepare``, ``build``; ``startup`` is the time from the
command's start to this reporter) are the parts of the whole run; they
are timed apart. What a built node's steps do not cover is its ``other``, and what the phases
do not cover is the run's ``other``: every second shows, as a step or as what is left.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from layerforge.events import Event, Reporter

STEP_NAMES = {
    "install": "install",  # uv: downloads and installs
    "layer": "compress",
    "source": "os layer",
    "debootstrap": "debootstrap",
}  # any other task is a step named by its kind: unpack, copy, diff, sandbox, bytecode, ...

PHASE = "phase"  # ``phase:NAME``: a part of the whole run, not a step of a node


@dataclass(frozen=True)
class StepTime:
    node: str
    step: str  # install | compress | os layer | debootstrap | ...
    label: str  # the task's own name
    seconds: float


@dataclass(frozen=True)
class Timings:
    nodes: dict[str, float]  # node -> seconds spent building it (cached nodes: 0)
    steps: tuple[StepTime, ...]
    total: float  # wall clock
    phases: dict[str, float] = field(default_factory=dict)  # load, prepare, build -> seconds

    def by_step(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for s in self.steps:
            out[s.step] = out.get(s.step, 0.0) + s.seconds
        return out

    def node_steps(self, node: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for s in self.steps:
            if s.node == node:
                out[s.step] = out.get(s.step, 0.0) + s.seconds
        return out

    def other(self, node: str) -> float:
        """Seconds of a node's build that none of its steps accounts for."""
        return max(0.0, self.nodes.get(node, 0.0) - sum(self.node_steps(node).values()))

    def unphased(self) -> float:
        """Seconds of the run that no phase accounts for."""
        return max(0.0, self.total - sum(self.phases.values()))

    def to_json(self) -> dict[str, Any]:
        return {
            "total": round(self.total, 3),
            "phases": {k: round(v, 3) for k, v in self.phases.items()},
            "other": round(self.unphased(), 3),
            "steps": {k: round(v, 3) for k, v in self.by_step().items()},
            "nodes": {
                node: {
                    "seconds": round(seconds, 3),
                    "steps": {k: round(v, 3) for k, v in self.node_steps(node).items()},
                    "other": round(self.other(node), 3),
                }
                for node, seconds in self.nodes.items()
            },
        }


def _split(task: str) -> tuple[str, str | None]:
    """(step, node or None) of a task name."""
    kind, _, rest = task.partition(":")
    step = STEP_NAMES.get(kind, kind)
    if kind in ("install", "layer", "pull") and rest and rest != "venv":
        return step, rest.split(":", 1)[0]
    return step, None


class TimingReporter:
    """Passes events to ``inner`` and times every task."""

    def __init__(
        self, inner: Reporter, clock: Any = time.perf_counter, started: float | None = None
    ) -> None:
        """``started``: when the command began (on ``clock``), if before this reporter was
        made; the seconds in between are the ``startup`` phase."""
        self.inner = inner
        self._clock = clock
        self._lock = threading.Lock()
        now = clock()
        self._started = now if started is None else min(started, now)
        self._open: dict[str, tuple[float, str | None]] = {}
        self._thread_node: dict[int, str] = {}
        self._nodes: dict[str, float] = {}
        self._steps: list[StepTime] = []
        self._phases: dict[str, float] = {}
        if started is not None:
            self._phases["startup"] = now - self._started

    def __enter__(self) -> TimingReporter:
        enter = getattr(self.inner, "__enter__", None)
        if enter is not None:
            enter()
        return self

    def __exit__(self, *exc: object) -> None:
        leave = getattr(self.inner, "__exit__", None)
        if leave is not None:
            leave(*exc)

    def emit(self, event: Event) -> None:
        with self._lock:
            self._note(event)
        self.inner.emit(event)

    def _note(self, event: Event) -> None:
        now = self._clock()
        thread = threading.get_ident()
        if event.task.startswith("build:"):
            if event.kind == "start":
                self._thread_node[thread] = event.task[6:]
            self._nodes.setdefault(event.task[6:], 0.0)
        if event.kind == "start":
            self._open[event.task] = (now, self._thread_node.get(thread))
        elif event.kind == "finish" and event.task in self._open:
            began, owner = self._open.pop(event.task)
            if event.task.startswith("build:"):
                self._nodes[event.task[6:]] = now - began
                return
            kind, _, name = event.task.partition(":")
            if kind == PHASE:
                self._phases[name] = self._phases.get(name, 0.0) + now - began
                return
            step, named = _split(event.task)
            self._steps.append(StepTime(named or owner or "-", step, event.task, now - began))

    def timings(self) -> Timings:
        with self._lock:
            return Timings(
                dict(self._nodes),
                tuple(self._steps),
                self._clock() - self._started,
                dict(self._phases),
            )
