"""Content keys and the reasons a plan gives, without building anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from layerforge.errors import LockError
from layerforge.lock.inputs import all_inputs
from layerforge.lock.lockfile import Lock, LockedNode, Package, SourcePin
from layerforge.manifest import Project, load
from layerforge.plan import NodeInputs, Step, make_plan, scan_sources, short

MANIFEST = """
[project]
name = "demo"

[bases.cpu]
from = { debootstrap = "bookworm" }
requirements = ["torch"]

[bases.ml]
from = "cpu"
requirements = ["six"]

[services.api]
base = "cpu"
source = "api"
command = ["python", "-m", "api"]

[services.rag]
base = "ml"
source = "rag"
"""


def pkg(name: str, version: str) -> Package:
    return Package(name, version, f"{name}-{version}-py3-none-any.whl", "u", name * 4, 1)


def project_and_lock(tmp: Path, torch: str = "2.7.1") -> tuple[Project, Lock]:
    for svc in ("api", "rag"):
        (tmp / svc).mkdir(exist_ok=True)
        (tmp / svc / "main.py").write_text(f"print('{svc}')\n")
    (tmp / "layerforge.toml").write_text(MANIFEST)
    project = load(tmp / "layerforge.toml")
    inputs = all_inputs(project)
    source = SourcePin("debootstrap", "bookworm", (), "sha256:" + "e" * 64)
    nodes = {
        "cpu": LockedNode(inputs["cpu"], (pkg("torch", torch),), source),
        "ml": LockedNode(inputs["ml"], (pkg("six", "1.17.0"),)),
        "api": LockedNode(inputs["api"]),
        "rag": LockedNode(inputs["rag"]),
    }
    return project, Lock("3.11", "x86_64-manylinux_2_28", nodes)


def plan_for(project: Project, lock: Lock, built: dict[str, Step] | None = None) -> dict[str, Step]:
    tags: dict[str, str] = {}
    previous: dict[str, NodeInputs] = {}
    for step in (built or {}).values():
        tags[f"{step.node}:{short(step.key)}"] = "sha256:" + "0" * 64
        previous[step.node] = step.inputs
    return make_plan(project, lock, scan_sources(project), tags, previous).by_node()


def test_everything_new_at_first(tmp_path: Path) -> None:
    project, lock = project_and_lock(tmp_path)
    steps = plan_for(project, lock)
    assert [s.status for s in steps.values()] == ["build"] * 4
    assert all(s.reasons == ("new",) for s in steps.values())


def test_same_inputs_same_keys_and_cached(tmp_path: Path) -> None:
    project, lock = project_and_lock(tmp_path)
    first = plan_for(project, lock)
    again = plan_for(project, lock, first)
    assert {n: s.key for n, s in again.items()} == {n: s.key for n, s in first.items()}
    assert all(s.status == "cached" for s in again.values())


def test_source_change_rebuilds_only_that_service(tmp_path: Path) -> None:
    project, lock = project_and_lock(tmp_path)
    first = plan_for(project, lock)
    (tmp_path / "api/main.py").write_text("print('changed')\n")
    (tmp_path / "api/new.py").write_text("x = 1\n")
    steps = plan_for(project, lock, first)
    assert {n for n, s in steps.items() if s.status == "build"} == {"api"}
    assert steps["api"].reasons == ("source changed: 2 files (main.py, new.py)",)


def test_requirement_change_rebuilds_base_and_descendants(tmp_path: Path) -> None:
    project, lock = project_and_lock(tmp_path)
    first = plan_for(project, lock)
    _, newer = project_and_lock(tmp_path, torch="2.8.0")
    steps = plan_for(project, newer, first)
    assert {n for n, s in steps.items() if s.status == "build"} == {"cpu", "ml", "api", "rag"}
    assert steps["cpu"].reasons == ("requirements changed: torch 2.7.1 -> 2.8.0",)
    assert steps["ml"].reasons == ("parent cpu changes",)
    assert steps["rag"].reasons == ("parent ml changes",)


def test_child_requirement_change_leaves_parent_cached(tmp_path: Path) -> None:
    project, lock = project_and_lock(tmp_path)
    first = plan_for(project, lock)
    nodes = dict(lock.nodes)
    nodes["ml"] = LockedNode(nodes["ml"].inputs, (pkg("six", "1.16.0"),))
    steps = plan_for(project, Lock(lock.python, lock.platform, nodes), first)
    assert {n for n, s in steps.items() if s.status == "build"} == {"ml", "rag"}
    assert steps["ml"].reasons == ("requirements changed: six 1.17.0 -> 1.16.0",)


def test_stale_lock_is_refused(tmp_path: Path) -> None:
    project, lock = project_and_lock(tmp_path)
    text = (tmp_path / "layerforge.toml").read_text().replace('["six"]', '["six", "idna"]')
    (tmp_path / "layerforge.toml").write_text(text)
    project = load(tmp_path / "layerforge.toml")
    with pytest.raises(LockError, match="out of date for: ml"):
        plan_for(project, lock)


def test_config_change_is_named(tmp_path: Path) -> None:
    project, lock = project_and_lock(tmp_path)
    first = plan_for(project, lock)
    text = (tmp_path / "layerforge.toml").read_text()
    (tmp_path / "layerforge.toml").write_text(text.replace('"-m", "api"]', '"-m", "api2"]'))
    steps = plan_for(load(tmp_path / "layerforge.toml"), lock, first)
    assert steps["api"].reasons == ("config changed: command",)
