"""Issue 13 item 5: the project version and the source revision are tags, not inputs. They
stay out of every content key; a store that holds a node's key with other labels gets a
``relabel`` step (a new config and manifest, no layer), not a rebuild."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from layerforge.lock.lockfile import Lock
from layerforge.manifest import Project
from layerforge.plan import NodeInputs, PlanOptions, Step, make_plan, scan_sources, short
from tests.unit.test_plan import project_and_lock


def _plan(
    project: Project,
    lock: Lock,
    built: dict[str, Step] | None = None,
    revision: str | None = None,
) -> dict[str, Step]:
    tags: dict[str, str] = {}
    previous: dict[str, NodeInputs] = {}
    labels: dict[str, dict[str, str]] = {}
    for step in (built or {}).values():
        ref = f"{step.node}:{short(step.key)}"
        tags[ref] = "sha256:" + "0" * 64
        previous[step.node] = step.inputs
        labels[ref] = dict(step.inputs.labels)
    options = PlanOptions(revision=revision)
    return make_plan(
        project, lock, scan_sources(project), tags, previous, options, labels=labels
    ).by_node()


def test_version_and_revision_are_not_in_the_key(tmp_path: Path) -> None:
    project, lock = project_and_lock(tmp_path)
    first = _plan(replace(project, version="1.0.0"), lock)
    bumped = _plan(replace(project, version="1.0.1"), lock)
    unversioned = _plan(replace(project, version=None), lock, revision="abc")
    keys = {n: s.key for n, s in first.items()}
    assert {n: s.key for n, s in bumped.items()} == keys
    assert {n: s.key for n, s in unversioned.items()} == keys
    assert all("version" not in s.inputs.doc and "revision" not in s.inputs.doc
               for s in unversioned.values())  # fmt: skip
    assert first["api"].inputs.labels == {"version": "1.0.0"}
    assert unversioned["api"].inputs.labels == {"revision": "abc"}


def test_a_bump_plans_relabel_not_build(tmp_path: Path) -> None:
    project, lock = project_and_lock(tmp_path)
    first = _plan(replace(project, version="1.0.0"), lock)
    same = _plan(replace(project, version="1.0.0"), lock, first)
    assert {s.status for s in same.values()} == {"cached"}
    bumped = _plan(replace(project, version="1.0.1"), lock, first)
    assert {s.status for s in bumped.values()} == {"relabel"}
    assert bumped["cpu"].reasons == ("version 1.0.0 -> 1.0.1 (labels only)",)
    assert bumped["api"].reasons == ("version 1.0.0 -> 1.0.1 (labels only)",)
    revised = _plan(replace(project, version="1.0.0"), lock, first, revision="abc")
    assert revised["cpu"].reasons == ("revision none -> abc (labels only)",)


def test_a_relabelled_parent_relabels_its_children(tmp_path: Path) -> None:
    """A child names its parent's manifest digest (base.digest): it moves with the parent."""
    project, lock = project_and_lock(tmp_path)
    first = _plan(replace(project, version="1.0.0"), lock)
    # the parent's stored image has other labels; the children's records match
    first["cpu"] = replace(first["cpu"], inputs=replace(first["cpu"].inputs, labels={}))
    again = _plan(replace(project, version="1.0.0"), lock, first)
    assert again["cpu"].status == "relabel"
    assert {again[n].status for n in ("ml", "api", "rag")} == {"relabel"}
    assert again["api"].reasons == ("parent cpu relabelled",)


def test_old_inputs_load_without_labels() -> None:
    old = NodeInputs.from_json({"doc": {"format": 2, "version": "1.0.0"}, "source_files": {}})
    assert old.labels == {}
    assert "labels" not in NodeInputs({"format": 2}).to_json()


def test_labels_off_a_bump_is_cached(tmp_path: Path) -> None:
    project, lock = project_and_lock(tmp_path)
    first = _plan(replace(project, version="1.0.0", version_labels=False), lock)
    assert all(s.inputs.labels == {} for s in first.values())
    bumped = _plan(replace(project, version="1.0.1", version_labels=False), lock, first, "abc")
    assert {s.status for s in bumped.values()} == {"cached"}


def test_an_old_record_with_the_version_in_its_key_says_why(tmp_path: Path) -> None:
    """The first build after the upgrade rebuilds (every key moved once): not a config change."""
    project, lock = project_and_lock(tmp_path)
    first = _plan(replace(project, version="1.0.0"), lock)
    old = {}
    for name, step in first.items():
        doc = {**step.inputs.doc, "version": "1.0.0"}
        old[name] = replace(step, key="sha256:" + "f" * 64, inputs=replace(step.inputs, doc=doc))
    steps = make_plan(replace(project, version="1.0.0"), lock, scan_sources(project), {},
                      {n: s.inputs for n, s in old.items()}).by_node()  # fmt: skip
    assert steps["cpu"].reasons == ("layerforge upgraded: version and revision left the key",)
    assert "config changed" not in " ".join(steps["api"].reasons)
