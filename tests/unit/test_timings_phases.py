"""Issue 13 item 2: the timings say what no step accounts for, per node and for the run."""

from __future__ import annotations

import threading

from layerforge.events import Event, ListReporter
from layerforge.report.timings import TimingReporter


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_timings_other_and_phases() -> None:
    clock = _Clock()
    rep = TimingReporter(ListReporter(), clock)

    def at(t: float, kind: str, task: str) -> None:
        clock.now = t
        rep.emit(Event(kind, task))  # type: ignore[arg-type]

    at(0, "start", "phase:load")
    at(1, "finish", "phase:load")
    at(1, "start", "phase:prepare")
    at(2, "finish", "phase:prepare")
    at(2, "start", "phase:build")
    at(2, "start", "build:cpu")
    at(2, "start", "unpack:cpu")
    at(4, "finish", "unpack:cpu")
    at(4, "start", "verify:cpu")
    at(5, "finish", "verify:cpu")
    at(6, "finish", "build:cpu")  # one second no step accounts for
    at(8, "finish", "phase:build")
    at(8, "start", "phase:prepare")  # a phase in two parts adds up
    at(9, "finish", "phase:prepare")
    clock.now = 10
    t = rep.timings()
    assert t.phases == {"load": 1, "prepare": 2, "build": 6}
    assert t.unphased() == 1
    assert t.node_steps("cpu") == {"unpack": 2, "verify": 1}
    assert t.nodes["cpu"] == 4 and t.other("cpu") == 1  # 4 s built, 3 s in steps
    doc = t.to_json()
    assert doc["phases"] == {"load": 1, "prepare": 2, "build": 6}
    assert doc["other"] == 1
    assert doc["nodes"]["cpu"]["other"] == 1
    assert "phase" not in doc["steps"] and "unpack" in doc["steps"]


def test_other_is_per_node_when_nodes_run_in_parallel() -> None:
    """Steps of two nodes on two threads: each node's other counts its own steps only."""
    rep = TimingReporter(ListReporter())
    barrier = threading.Barrier(2)

    def work(node: str) -> None:
        rep.emit(Event("start", f"build:{node}"))
        barrier.wait()
        rep.emit(Event("start", f"unpack:{node}"))
        rep.emit(Event("finish", f"unpack:{node}"))
        rep.emit(Event("finish", f"build:{node}"))

    threads = [threading.Thread(target=work, args=(n,)) for n in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    t = rep.timings()
    for node in ("a", "b"):
        assert 0 <= t.other(node) <= t.nodes[node]
        assert [s.node for s in t.steps if s.label == f"unpack:{node}"] == [node]


def test_the_time_before_the_reporter_is_the_startup_phase() -> None:
    clock = _Clock()
    clock.now = 5
    rep = TimingReporter(ListReporter(), clock, started=3.5)  # the command began at 3.5
    clock.now = 6
    t = rep.timings()
    assert t.phases == {"startup": 1.5}
    assert t.total == 2.5 and t.unphased() == 1


def test_a_pull_belongs_to_the_node_it_names() -> None:
    """A node reused from the registry is fetched on a pool thread that built another node
    before: the fetch is that node's, as its task says."""
    clock = _Clock()
    rep = TimingReporter(ListReporter(), clock)
    rep.emit(Event("start", "build:cpu"))
    rep.emit(Event("finish", "build:cpu"))
    rep.emit(Event("start", "pull:api"))
    clock.now = 2
    rep.emit(Event("finish", "pull:api"))
    t = rep.timings()
    assert t.node_steps("api") == {"pull": 2} and t.node_steps("cpu") == {}
