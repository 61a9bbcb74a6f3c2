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

from layerforge.build.context import BuildContext, NodeResult
from layerforge.build.disk import preflight
from layerforge.build.executor import execute
from layerforge.cachedir import uses_cache
from layerforge.errors import LockError, VerifyError
from layerforge.events import NullReporter, Reporter
from layerforge.lock import lockfile
from layerforge.lock.inputs import stale_nodes
from layerforge.lock.lockfile import Lock, LockedNode
from layerforge.lock.resolve import resolve
from layerforge.lock.uv import ResolveOptions
from layerforge.manifest import Project, load
from layerforge.oci.config import default_config
from layerforge.oci.layout import Store
from layerforge.plan import Plan, PlanOptions, load_previous, make_plan, scan_sources
from layerforge.publish import RegistryCache, fetch_missing, mark_remote
from layerforge.records import ImageRecord, read_record
from layerforge.sandbox.verify import CheckResult, verify_image
from layerforge.sources.base import SourceContext
from layerforge.sources.materialize import materialize


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
        ctx = BuildContext(
            project, lock, store, ws.cache_dir, reporter, trees, jobs=jobs,
            allow_oversize=allow_oversize, remote=remote, verify=verify, runner=runner,
        )  # fmt: skip
        preflight(plan, ctx)  # refuse before writing
        return plan, execute(plan, ctx)


@uses_cache
def verify_project(
    project: Project,
    ws: Workspace,
    names: list[str] | None = None,
    reporter: Reporter | None = None,
    runner_name: str | None = None,
) -> list[CheckResult]:
    """Verify the images of ``names`` (default: every node) as the manifest describes them
    now: each node's content-key tag must be in the store (else: build it first)."""
    reporter = reporter or NullReporter()
    plan = plan_project(project, ws, names or None)
    wanted = set(names) if names else set(project.nodes)
    store = Store.open(ws.store)
    results: list[CheckResult] = []
    with store.shared():  # gc waits: the images stay whole while they are unpacked
        for step in plan.steps:
            if step.node not in wanted:
                continue
            record = read_record(store, f"{step.node}:{step.tag}")
            if record is None:
                raise VerifyError(
                    f"{step.node} is not built for the current manifest ({step.tag} is not in "
                    f"{ws.store})",
                    hint=f"run `layerforge build {step.node}` first",
                )
            node = project.nodes[step.node]
            _ensure_layers(project, store, record)
            results += verify_image(store, record, node, ws.cache_dir, reporter, runner_name)
    return results


def _ensure_layers(project: Project, store: Store, record: ImageRecord) -> None:
    """A node reused from the registry (remote cache) has only its manifest and config in
    the store: fetch its layers before unpacking it."""
    if all(store.has_blob(layer.descriptor.digest) for layer in record.layers):
        return
    if not project.registry:
        raise VerifyError(
            f"{record.node}: layers of its image are missing from {store.root}",
            hint=f"rebuild it with `layerforge build {record.node}`",
        )
    fetch_missing(project, store, record.node, default_config())
