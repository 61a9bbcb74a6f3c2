"""Item 4 of issue 16: ``plan --rebase`` marks the nodes whose only change is the OS below
them as ``rebase`` (their Python, runtime and app layers are kept), and no others."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from layerforge.lock.lockfile import Lock, SourcePin
from layerforge.plan import NodeInputs, PlanOptions, Step, make_plan, scan_sources, short
from tests.unit.test_plan import project_and_lock


def plan(
    project_lock: tuple[object, Lock], built: dict[str, Step], *, rebase: bool
) -> dict[str, Step]:
    project, lock = project_lock
    tags = {f"{s.node}:{short(s.key)}": "sha256:" + "0" * 64 for s in built.values()}
    previous: dict[str, NodeInputs] = {s.node: s.inputs for s in built.values()}
    options = PlanOptions(rebase=rebase)
    return make_plan(project, lock, scan_sources(project), tags, previous, options).by_node()  # type: ignore[arg-type]


def new_os(lock: Lock) -> Lock:
    cpu = lock.nodes["cpu"]
    assert cpu.source is not None
    source = SourcePin("debootstrap", "bookworm", (), "sha256:" + "f" * 64)
    return replace(lock, nodes={**lock.nodes, "cpu": replace(cpu, source=source)})


def test_plan_marks_rebase_when_only_the_os_changed(tmp_path: Path) -> None:
    project, lock = project_and_lock(tmp_path)
    first = plan((project, lock), {}, rebase=False)
    steps = plan((project, new_os(lock)), first, rebase=True)
    assert {n: s.status for n, s in steps.items()} == dict.fromkeys(steps, "rebase")
    assert steps["cpu"].reasons[0] == "OS source changed"
    assert "keeps" in steps["cpu"].reasons[-1] and "renews" in steps["cpu"].reasons[-1]
    assert steps["api"].reasons[0] == "parent cpu changes"
    # without --rebase: the plan a build has always made
    plain = plan((project, new_os(lock)), first, rebase=False)
    assert {s.status for s in plain.values()} == {"build"}
    assert plain["cpu"].key == steps["cpu"].key  # a rebase makes the image the key names


def test_other_changes_are_not_a_rebase(tmp_path: Path) -> None:
    project, lock = project_and_lock(tmp_path)
    first = plan((project, lock), {}, rebase=False)
    _, newer = project_and_lock(tmp_path, torch="2.8.0")
    (tmp_path / "api/main.py").write_text("print('changed')\n")
    steps = plan((project, new_os(newer)), first, rebase=True)
    assert steps["cpu"].status == "build"  # requirements changed too
    assert steps["ml"].status == "build"  # its parent is not rebased
    fresh = plan((project, new_os(lock)), {}, rebase=True)
    assert {s.status for s in fresh.values()} == {"build"}  # nothing built before
    only_source = plan((project, lock), first, rebase=True)
    assert only_source["api"].status == "build" and only_source["cpu"].status == "cached"
