"""The core operations behind each CLI verb, callable as a library.

Everything takes explicit paths and a reporter; nothing reads the environment or the
current directory.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from layerforge import lockfile
from layerforge.build.executor import BuildContext, NodeResult, execute
from layerforge.cachedir import uses_cache
from layerforge.errors import LockError
from layerforge.events import NullReporter, Reporter
from layerforge.lockfile import Lock, LockedNode
from layerforge.manifest import Project, load
from layerforge.oci.layout import Store
from layerforge.plan import Plan, PlanOptions, load_previous, make_plan, scan_sources
from layerforge.report.disk import preflight
from layerforge.resolve import ResolveOptions, resolve, stale_nodes
from layerforge.sources.base import SourceContext
from layerforge.sources.materialize import materialize

if TYPE_CHECKING:
    from layerforge.publish import RegistryCache


@dataclass(frozen=True)
class Workspace:
    """Where a project lives and keeps its store and caches."""

    manifest: Path
    store: Path
    cache_dir: Path

    @property
    def lock_path(self) -> Path:
        return self.manifest.parent / lockfile.LOCK_NAME


def load_project(ws: Workspace) -> Project:
    return load(ws.manifest, ws.cache_dir)


@dataclass(frozen=True)
class LockResult:
    lock: Lock
    changed: bool
    resolved: tuple[str, ...]


def check_lock(project: Project, ws: Workspace) -> list[str]:
    """Nodes whose lock entry is stale (empty list: the lock is current)."""
    previous = lockfile.read_optional(ws.lock_path)
    stale = stale_nodes(project, previous)
    if previous is not None:
        stale += [
            name
            for name, node in project.nodes.items()
            if node.os_source is not None
            and name in previous.nodes
            and "identity" not in dict(previous.nodes[name].source)
        ]
    return sorted(set(stale))


@uses_cache
def lock_project(
    project: Project,
    ws: Workspace,
    options: ResolveOptions | None = None,
    reporter: Reporter | None = None,
) -> LockResult:
    reporter = reporter or NullReporter()
    options = options or ResolveOptions()
    previous = lockfile.read_optional(ws.lock_path)
    before = stale_nodes(project, previous)
    lock = resolve(project, previous, options, reporter)
    with _new_store_undone_on_error(ws.store) as store, store.shared():  # gc waits
        nodes = _lock_sources(project, ws, store, lock, previous, options, reporter)
    lock = replace(lock, nodes=nodes)
    changed = lockfile.write(ws.lock_path, lock)
    return LockResult(lock, changed, tuple(before))


def _lock_sources(
    project: Project,
    ws: Workspace,
    store: Store,
    lock: Lock,
    previous: Lock | None,
    options: ResolveOptions,
    reporter: Reporter,
) -> dict[str, LockedNode]:
    """The lock's nodes with the identity of each OS source, materialised into ``store``."""
    ctx = SourceContext(
        store, ws.cache_dir, reporter, project.python, project.compression,
        project.source_date_epoch,
    )  # fmt: skip
    nodes = dict(lock.nodes)
    for name, node in project.nodes.items():
        if node.os_source is None:
            continue
        old = previous.nodes.get(name) if previous and not options.upgrade else None
        pinned = (
            dict(old.source).get("identity") if old and old.inputs == nodes[name].inputs else None
        )
        image = materialize(
            node.os_source, replace(ctx, pinned=pinned), node.section, refresh=options.upgrade
        )
        fields = {**dict(nodes[name].source), "identity": image.identity}
        nodes[name] = replace(nodes[name], source=tuple(fields.items()))
    return nodes


@contextmanager
def _new_store_undone_on_error(path: Path) -> Iterator[Store]:
    """The store at ``path``; if this call created it and the block fails (an OS source that
    cannot be used: a missing tag, an unknown suite, an unreachable registry), it is removed
    again, so that a failed first `lock` leaves no empty ``.layerforge`` behind."""
    fresh = not path.exists()
    store = Store.open(path)
    try:
        yield store
    except BaseException:
        if fresh and path.is_dir() and not store.tags():  # nobody else tagged anything
            shutil.rmtree(path, ignore_errors=True)
        raise


def read_lock(project: Project, ws: Workspace) -> Lock:
    lock = lockfile.read(ws.lock_path)
    stale = check_lock(project, ws)
    if stale:
        raise LockError(
            f"{ws.lock_path} is out of date for: {', '.join(stale)}",
            hint="run `layerforge lock` (and commit layerforge.lock)",
        )
    return lock


def plan_project(
    project: Project,
    ws: Workspace,
    selected: list[str] | None = None,
    options: PlanOptions | None = None,
    remote: RegistryCache | None = None,
) -> Plan:
    names = project.select(selected) if selected else None
    lock = read_lock(project, ws)
    tags = _built_tags(ws.store)
    previous = load_previous(ws.store, tags)
    trees = scan_sources(project, (ws.store, ws.cache_dir))
    plan = make_plan(project, lock, trees, tags, previous, options, names)
    return _with_remote(plan, remote)


def _built_tags(path: Path) -> dict[str, str]:
    """ref -> manifest digest of the tags whose manifest the store holds; a store that does
    not exist yet holds none (and is not created: planning writes nothing)."""
    if not (path / "oci-layout").exists():
        return {}
    store = Store.open(path, create=False)
    return {ref: d.digest for ref, d in store.tags().items() if store.has_blob(d.digest)}


def _with_remote(plan: Plan, remote: RegistryCache | None) -> Plan:
    if remote is None or not plan.to_build:
        return plan
    from layerforge.publish import mark_remote  # noqa: PLC0415

    return mark_remote(plan, remote.present(plan))


@uses_cache
def build_project(
    project: Project,
    ws: Workspace,
    selected: list[str] | None = None,
    options: PlanOptions | None = None,
    reporter: Reporter | None = None,
    jobs: int = 2,
    remote: RegistryCache | None = None,
    *,
    verify: bool = True,
    runner: str | None = None,
    allow_oversize: bool = False,
) -> tuple[Plan, dict[str, NodeResult]]:
    reporter = reporter or NullReporter()
    names = project.select(selected) if selected else None
    lock = read_lock(project, ws)
    store = Store.open(ws.store)
    with store.shared():  # from reading the tags to the last tag written: gc waits
        tags = {r: d.digest for r, d in store.tags().items() if store.has_blob(d.digest)}
        trees = scan_sources(project, (ws.store, ws.cache_dir))
        plan = make_plan(project, lock, trees, tags, load_previous(ws.store, tags), options, names)
        plan = _with_remote(plan, remote)
        preflight(plan, project, lock, store, ws.cache_dir, trees, jobs)  # refuse before writing
        ctx = BuildContext(
            project, lock, store, ws.cache_dir, reporter, trees, jobs=jobs,
            allow_oversize=allow_oversize, remote=remote, verify=verify, runner=runner,
        )  # fmt: skip
        return plan, execute(plan, ctx)
