"""The core operations behind each CLI verb, callable as a library.

Everything takes explicit paths and a reporter; nothing reads the environment or the
current directory.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path

from layerforge import cachedir
from layerforge.audit.osv import OsvApi, OsvDb
from layerforge.audit.run import AuditReport, audit
from layerforge.builder import budgets
from layerforge.builder.context import BuildContext, NodeResult
from layerforge.builder.disk import preflight
from layerforge.builder.diskwatch import DiskWatch
from layerforge.builder.executor import execute
from layerforge.builder.oslock import lock_system, stale_system
from layerforge.cachedir import uses_cache
from layerforge.errors import AuditError, LayerforgeError, LockError, UsageError, VerifyError
from layerforge.events import Event, NullReporter, Reporter
from layerforge.events import step as timed
from layerforge.export import ExportOptions, WriteResult, export, make_context
from layerforge.export.common import find_repo_root
from layerforge.gc.cachegc import CacheGcResult, collect_caches, evict
from layerforge.gc.storegc import GcResult, collect
from layerforge.lock import lockfile
from layerforge.lock.inputs import all_inputs, check_libc, stale_nodes
from layerforge.lock.lockfile import ArchiveState, DebPackage, Lock, LockedNode, SourcePin
from layerforge.lock.resolve import resolve
from layerforge.lock.runtime import GroupSummary, summaries
from layerforge.lock.uv import ResolveOptions
from layerforge.manifest import OSSource, Project, did_you_mean, find_manifest, load
from layerforge.manifest.model import MAX_EPOCH
from layerforge.manifest.starter import write_starter
from layerforge.migrate.mapping import OsMode
from layerforge.migrate.run import migrate, write_report
from layerforge.oci.archive import Archive, write_archive
from layerforge.oci.auth import Credential
from layerforge.oci.config import RegistryConfig, login
from layerforge.oci.layout import Store
from layerforge.oci.push import PushResult
from layerforge.oci.reference import namespace_problem, split_namespace
from layerforge.plan import (
    Plan,
    PlanOptions,
    load_labels,
    load_previous,
    make_plan,
    scan_sources,
)
from layerforge.publish import (
    Loaded,
    RegistryCache,
    Target,
    archive_name,
    fetch_missing,
    load_image,
    mark_remote,
    pick_engine,
    push_nodes,
)
from layerforge.records import ImageRecord, read_record
from layerforge.report.fleet import FleetReport, fleet_report
from layerforge.report.html import render
from layerforge.report.sizes import describe_layer
from layerforge.report.timings import TimingReporter
from layerforge.sandbox.launch import RunOptions, run_image
from layerforge.sandbox.system import Sandbox
from layerforge.sandbox.verify import CheckResult, verify_image
from layerforge.sbom.attach import make_sbom, sbom_bytes, sbom_ref, stored_sbom, write_sbom
from layerforge.sizes import parse_size
from layerforge.sources.base import BaseImage, SourceContext
from layerforge.sources.debian import default_mirror, identity_of
from layerforge.sources.debootstrap import lock_rows
from layerforge.sources.materialize import materialize, recorded
from layerforge.suggest.candidates import candidates
from layerforge.suggest.edit import apply
from layerforge.suggest.run import Suggestion, suggest

__all__ = [  # the verbs, and the types and helpers the CLI takes from here (it imports only api)
    "Archive",
    "AuditReport",
    "CacheGcResult",
    "CheckResult",
    "Credential",
    "ExportOptions",
    "ExportOutcome",
    "FleetReport",
    "GarbageResult",
    "GcResult",
    "GroupSummary",
    "InitFromResult",
    "Loaded",
    "Lock",
    "LockResult",
    "NodeResult",
    "Plan",
    "PlanOptions",
    "Project",
    "PushResult",
    "RegistryCache",
    "ReportResult",
    "ResolveOptions",
    "RunOptions",
    "Store",
    "Suggestion",
    "TimingReporter",
    "Workspace",
    "archive_node",
    "audit_project",
    "build_project",
    "check_audit",
    "check_budgets",
    "check_lock",
    "collect_garbage",
    "describe_layer",
    "did_you_mean",
    "export_project",
    "find_manifest",
    "find_repo_root",
    "init_from",
    "init_project",
    "load_node",
    "load_project",
    "lock_project",
    "login_registry",
    "open_store",
    "plan_project",
    "push_project",
    "read_lock",
    "read_optional_lock",
    "rebase_project",
    "registry_cache",
    "report_html",
    "report_project",
    "run_node",
    "runtime_summaries",
    "sbom_project",
    "schema_text",
    "suggest_project",
    "verify_project",
    "write_suggestion",
]


def registry_config() -> RegistryConfig:
    """The registry settings of this process's environment (DOCKER_CONFIG,
    LAYERFORGE_INSECURE_REGISTRIES, LAYERFORGE_CERTS_DIR, HOME, XDG_CONFIG_HOME), read at
    call time: the one place below the CLI that reads the environment for registries."""
    return RegistryConfig.from_env(os.environ)


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
    """The manifest, with what this process's environment overrides (:func:`from_env`)."""
    return from_env(load(ws.manifest, ws.cache_dir), os.environ)


def from_env(project: Project, environ: Mapping[str, str]) -> Project:
    """``SOURCE_DATE_EPOCH`` wins over ``project.source_date_epoch`` (it is in every content
    key, so the keys follow it), and ``LAYERFORGE_REGISTRY`` over ``project.registry``."""
    epoch = environ.get("SOURCE_DATE_EPOCH", "").strip()
    if epoch:
        if not epoch.isdigit() or int(epoch) > MAX_EPOCH:
            raise UsageError(
                f"SOURCE_DATE_EPOCH={epoch!r} is not a time layerforge can write",
                hint=f"set it to whole seconds since 1970 (0 to {MAX_EPOCH}), e.g. "
                "$(git log -1 --format=%ct), or unset it to use project.source_date_epoch",
            )
        project = replace(project, source_date_epoch=int(epoch))
    registry = environ.get("LAYERFORGE_REGISTRY", "").strip()
    if registry:
        problem = namespace_problem(registry)
        if problem is not None:
            raise UsageError(
                f"LAYERFORGE_REGISTRY={registry!r} is not a registry namespace: {problem}",
                hint="write HOST[:PORT][/PATH], e.g. '127.0.0.1:5000/acme', or unset it to use "
                "project.registry",
            )
        project = replace(project, registry=registry)
    return project


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
            and previous.nodes[name].os_identity is None
        ]
        stale += _predates_libc(project, ws, previous)
        stale += _edited_rows(previous)
        stale += stale_system(project, previous)
    return sorted(set(stale))


def _edited_rows(lock: Lock) -> list[str]:
    """Root bases whose Debian package rows are not the ones their identity was made from
    (edited by hand): `lock` reads them again."""
    return [
        name
        for name, node in lock.nodes.items()
        if node.source is not None
        and node.source.os
        and identity_of(node.source.os) != node.source.identity
    ]


def _predates_libc(project: Project, ws: Workspace, lock: Lock) -> list[str]:
    """Root bases locked without a C library whose OS source (as last materialized into the
    store, with the locked identity) has one: the lock predates libc detection."""
    out = []
    for name, node in project.nodes.items():
        pin = lock.nodes[name].source if name in lock.nodes else None
        if node.os_source is None or pin is None or pin.libc is not None:
            continue
        image = recorded(ws.store, node.os_source, pin.os)
        if image is not None and image.libc is not None and image.identity == pin.identity:
            out.append(name)
    return out


@uses_cache
def lock_project(
    project: Project,
    ws: Workspace,
    options: ResolveOptions | None = None,
    reporter: Reporter | None = None,
) -> LockResult:
    """Materialize every root base's OS source first (its identity, and its C library, which
    decides the platform its chain resolves for), then resolve."""
    reporter = reporter or NullReporter()
    options = options or ResolveOptions()
    previous = lockfile.read_optional(ws.lock_path)
    before = stale_nodes(project, previous)
    with _new_store_undone_on_error(ws.store) as store, store.shared():  # gc waits
        images: dict[str, BaseImage] = {}
        pins = _lock_sources(project, ws, store, previous, options, reporter, images)
        lock = resolve(project, previous, options, reporter, pins)
        sandbox = Sandbox(store, ws.cache_dir, reporter, None, project.source_date_epoch)
        lock = lock_system(project, lock, previous, images, sandbox, options)
    changed = lockfile.write(ws.lock_path, lock)
    return LockResult(lock, changed, tuple(before))


def _lock_sources(
    project: Project,
    ws: Workspace,
    store: Store,
    previous: Lock | None,
    options: ResolveOptions,
    reporter: Reporter,
    images: dict[str, BaseImage],
) -> dict[str, SourcePin]:
    """The pin of each root base's OS source, materialised into ``store`` (and ``images``)."""
    ctx = SourceContext(
        store, ws.cache_dir, reporter, project.python, project.compression,
        project.source_date_epoch, registry=registry_config(),
    )  # fmt: skip
    inputs = all_inputs(project)
    pins: dict[str, SourcePin] = {}
    for name, node in project.nodes.items():
        src = node.os_source
        if src is None:
            continue
        old = previous.nodes.get(name) if previous and not options.upgrade else None
        pinned = old.os_identity if old and old.inputs == inputs[name] else None
        rows, archives = _os_rows(src, old if pinned else None, ctx, node.section, options)
        image = materialize(
            src, replace(ctx, pinned=pinned, os_rows=rows), node.section, refresh=options.upgrade
        )
        images[name] = image
        libc = image.libc.describe() if image.libc is not None else None
        pins[name] = SourcePin(
            src.kind, src.spec, tuple(src.packages), image.identity, libc, rows, archives
        )
    return pins


def _os_rows(
    src: OSSource,
    old: LockedNode | None,
    ctx: SourceContext,
    where: str,
    options: ResolveOptions,
) -> tuple[tuple[DebPackage, ...], tuple[ArchiveState, ...]]:
    """The Debian packages of a debootstrap root: kept from the lock while its inputs did not
    change (no network), read from the archive otherwise (and with ``--upgrade-os`` or
    ``--upgrade``: the versions it serves today)."""
    if src.kind != "debootstrap":
        return (), ()
    fresh = options.upgrade or options.upgrade_os
    pin = old.source if old is not None else None
    if pin is not None and pin.os and identity_of(pin.os) == pin.identity and not fresh:
        return pin.os, pin.archives
    mirror = ctx.mirror or default_mirror()
    return lock_rows(src, ctx.cache_dir, ctx.reporter, where, mirror, fresh=fresh)


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
    for name, node in lock.nodes.items():  # a wheel newer than the locked C library
        if node.source is not None and name in project.nodes:
            check_libc(project, lock.nodes, name, node.source.libc)
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
    labels = load_labels(ws.store, tags)
    plan = make_plan(project, lock, trees, tags, previous, options, names, labels=labels)
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
    sbom: bool = True,
) -> tuple[Plan, dict[str, NodeResult]]:
    """Build, then bring the unpacked layers and roots under the cache cap (when no other
    build uses the cache: eviction needs it exclusively). The peak disk use of the store,
    the cache and uv's cache is measured throughout and reported (an ``info`` event of task
    ``disk``, its figures as data)."""
    reporter = reporter or NullReporter()
    uv_cache = uv_cache_dir()
    places = {"store": ws.store, "cache": ws.cache_dir, "uv cache": uv_cache}
    with DiskWatch(places, store=ws.store, cache_dir=ws.cache_dir) as watch:
        out = _build_project(
            project, ws, selected, options, reporter, jobs, remote,
            verify=verify, runner=runner, allow_oversize=allow_oversize, uv_cache=uv_cache,
            sbom=sbom,
        )  # fmt: skip
        cap = cache_max(project.cache_max)
        with cachedir.exclusive(ws.cache_dir) as alone, suppress(OSError):
            if alone:
                evict(ws.cache_dir, cap)
    figures = watch.figures()
    reporter.emit(Event("info", "disk", figures.line(), data=figures.to_json()))
    return out


def uv_cache_dir() -> Path:
    """Where uv keeps its cache (``UV_CACHE_DIR``, else its default under the user's cache)."""
    if os.environ.get("UV_CACHE_DIR"):
        return Path(os.environ["UV_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "uv"


def cache_max(manifest_cap: int | None) -> int | None:
    """The cap on the unpacked trees: ``LAYERFORGE_CACHE_MAX``, else the manifest's
    ``cache_max``, else None (the default: half of the free space)."""
    value = os.environ.get("LAYERFORGE_CACHE_MAX", "").strip()
    if not value:
        return manifest_cap
    try:
        return parse_size(value)
    except ValueError as exc:
        raise UsageError(
            f"LAYERFORGE_CACHE_MAX: {exc}", hint="set it to a size such as 20GB, or unset it"
        ) from None


@uses_cache
def _build_project(
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
    uv_cache: Path | None = None,
    sbom: bool = True,
) -> tuple[Plan, dict[str, NodeResult]]:
    reporter = reporter or NullReporter()
    names = project.select(selected) if selected else None
    with timed(reporter, "phase:prepare", "checking the lock"):
        lock = read_lock(project, ws)
        store = Store.open(ws.store)
    with store.shared():  # from reading the tags to the last tag written: gc waits
        with timed(reporter, "phase:prepare", "planning"):  # the two parts add up
            tags = {r: d.digest for r, d in store.tags().items() if store.has_blob(d.digest)}
            trees = scan_sources(project, (ws.store, ws.cache_dir))
            previous = load_previous(ws.store, tags)
            plan = make_plan(project, lock, trees, tags, previous, options, names,
                             labels=load_labels(ws.store, tags))  # fmt: skip
            plan = _with_remote(plan, remote)
            ctx = BuildContext(
                project, lock, store, ws.cache_dir, reporter, trees, jobs=jobs,
                allow_oversize=allow_oversize, remote=remote, verify=verify, runner=runner,
                registry=registry_config(), sbom=sbom,
            )  # fmt: skip
            preflight(plan, ctx, uv_cache)  # refuse before writing
        with timed(reporter, "phase:build", "building"):
            return plan, execute(plan, ctx)


@uses_cache
def rebase_project(
    project: Project,
    ws: Workspace,
    selected: list[str] | None = None,
    reporter: Reporter | None = None,
    jobs: int = 2,
    *,
    verify: bool = True,
    runner: str | None = None,
) -> tuple[Plan, dict[str, NodeResult]]:
    """Put the built images on their new OS: every node whose only change is the OS below
    it is rebased (OS and system layers renewed, the rest kept by descriptor, see
    layerforge.builder.rebase). A node that needs more than that is refused, with its
    reasons, before anything is built."""
    options = PlanOptions(rebase=True)
    plan = plan_project(project, ws, selected, options)
    other = [s for s in plan.steps if s.status == "build"]
    if other:
        raise UsageError(
            "a rebase keeps every Python layer; these nodes need a build: "
            + "; ".join(f"{s.node} ({', '.join(s.reasons)})" for s in other),
            hint="run `layerforge build` (a rebase is for a changed OS below built images)",
        )
    return build_project(
        project, ws, selected, options, reporter, jobs, verify=verify, runner=runner
    )


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
            results += verify_image(store, record, node, ws.cache_dir, reporter, runner_name,
                                    writable=project.writable_above(node.name))  # fmt: skip
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
    fetch_missing(project, store, record.node, registry_config())


# -- the other verbs (each CLI command calls one of these) ------------------------------------


def init_project(directory: Path, name: str | None = None) -> Path:
    """Write a starter layerforge.toml in ``directory``; returns its path."""
    return write_starter(directory, name)


@dataclass(frozen=True)
class InitFromResult:
    """What ``init --from`` wrote and how it went: exit code 0 only when every instruction
    was mapped (or dropped with a reason) and the manifest locks."""

    manifest: Path
    report: Path
    rows: list[dict[str, object]]
    counts: dict[str, int]
    problems: list[str]
    lock_error: str | None
    exit_code: int

    def to_json(self) -> dict[str, object]:
        return {
            "manifest": str(self.manifest),
            "report": str(self.report),
            "counts": self.counts,
            "problems": self.problems,
            "lock_error": self.lock_error,
            "exit_code": self.exit_code,
            "rows": self.rows,
        }


def init_from(
    source: Path,
    name: str | None,
    *,
    os_mode: str = "registry",
    tags: dict[str, Path] | None = None,
    lock: bool = True,
    store: Path | None = None,
    cache_dir: Path,
    reporter: Reporter | None = None,
) -> InitFromResult:
    """``layerforge init --from SOURCE``: write layerforge.toml and layerforge-migration.md in
    SOURCE from its Dockerfiles, then check that the manifest locks (unless ``lock`` is off)."""
    mode: OsMode = "debootstrap" if os_mode == "debootstrap" else "registry"
    done = migrate(source, name, mode, tags or {})
    lock_error: str | None = None
    if lock:
        ws = Workspace(done.manifest, store or done.manifest.parent / ".layerforge", cache_dir)
        try:
            lock_project(load_project(ws), ws, None, reporter)
        except LayerforgeError as exc:
            lock_error = str(exc)
    proposals = _proposals(done.manifest, cache_dir)
    counted = write_report(done, lock_error, proposals)
    problems = done.problems()
    failed = bool(problems) or lock_error is not None
    return InitFromResult(
        manifest=done.manifest,
        report=done.report,
        rows=[r.to_json() for r in done.rows],
        counts=counted,
        problems=problems,
        lock_error=lock_error,
        exit_code=1 if failed else 0,
    )


def _proposals(manifest: Path, cache_dir: Path) -> list[str]:
    """What `suggest` would try on a migrated manifest (its candidates, today's aside), for
    the report: with no build yet there are no measured sizes to score them with."""
    try:
        project = load(manifest, cache_dir)
    except LayerforgeError:
        return []
    return [c.name for c in candidates(project)[1:]]


def schema_text() -> str:
    """The JSON Schema of layerforge.toml."""
    # pydantic loads only here and on a manifest cache miss, never for the other verbs
    from layerforge.manifest.schema import json_schema_text  # noqa: PLC0415

    return json_schema_text()


def read_optional_lock(ws: Workspace) -> Lock | None:
    """The lock as it is (stale or not); None when there is none yet."""
    return lockfile.read_optional(ws.lock_path)


def runtime_summaries(
    project: Project, lock: Lock | None, names: list[str] | None = None
) -> list[GroupSummary]:
    """The runtime groups of ``names`` (default: every node); none without a lock."""
    if lock is None or not any(n.runtime for n in project.nodes.values()):
        return []
    known = [n for n in (names or list(project.nodes)) if n in lock.nodes]
    return summaries(project, lock, known)


def registry_cache(
    project: Project, reporter: Reporter, cache_dir: Path | None = None
) -> RegistryCache | None:
    """A RegistryCache for the project's registry, or None when it has none, or when
    LAYERFORGE_OFFLINE is set. With ``cache_dir``, a registry found unreachable is remembered
    there for a few minutes."""
    if not project.registry or offline():
        return None
    status = cachedir.REGISTRY_STATUS.path(cache_dir) if cache_dir is not None else None
    return RegistryCache(project, registry_config(), reporter, status_dir=status)


def offline() -> bool:
    """LAYERFORGE_OFFLINE (any value but empty, 0, false, no): never ask project.registry."""
    value = os.environ.get("LAYERFORGE_OFFLINE", "").strip().lower()
    return value not in ("", "0", "false", "no")


def open_store(root: Path) -> Store:
    """The store at ``root`` for verbs that only read it; an empty or missing store is a
    UsageError (exit 2) naming it, a damaged one stays a StoreError (exit 1)."""
    if not (root / "oci-layout").exists():
        state = "does not exist" if not root.exists() else "holds no oci-layout file"
        raise UsageError(
            f"nothing built in the store {root} (it {state})",
            hint="run `layerforge build` first, or pass --store DIR where you built",
        )
    return Store.open(root, create=False)


@dataclass(frozen=True)
class ReportResult:
    fleet: FleetReport
    runtime: list[GroupSummary]


def report_project(
    project: Project, ws: Workspace, store: Store, selected: list[str] | None = None
) -> ReportResult:
    """Sizes, layers, sharing, waste and budgets of the images of ``selected`` (default:
    all) in ``store`` (see :func:`open_store`), and their runtime groups."""
    lock = read_optional_lock(ws)
    return ReportResult(
        fleet_report(store, project, lock, selected), runtime_summaries(project, lock, selected)
    )


def suggest_project(
    project: Project,
    ws: Workspace,
    store: Store,
    pools: dict[str, list[str]],
    *,
    releases: bool = True,
    horizon: int = 6,
) -> Suggestion:
    """Score alternative hierarchies of the built fleet and recommend one (docs/suggest.md):
    the lock must be current, and every node built. ``releases``: read release dates from
    the project's default index for the rebuild measure."""
    lock = read_lock(project, ws)
    return suggest(
        project, lock, store, pools, releases=releases, horizon=horizon, cache_dir=ws.cache_dir
    )


def write_suggestion(ws: Workspace, suggestion: Suggestion, name: str | None = None) -> str:
    """Apply candidate ``name`` (default: the recommendation) to the manifest; returns the
    diff. The caller locks again."""
    chosen = name or suggestion.chosen
    known = [c.name for c in suggestion.candidates if c.error is None]
    if chosen not in known:
        raise UsageError(
            f"no candidate named {chosen!r}{did_you_mean(chosen, known)}",
            hint="pass a name from the table of `layerforge suggest`",
        )
    return apply(ws.manifest, suggestion.candidate(chosen).edits)


def report_html(report: FleetReport, audit: AuditReport | None = None) -> str:
    """The self-contained HTML page of a report (with an audit section when given one)."""
    return render(report, audit=audit.to_json() if audit is not None else None)


def check_budgets(report: FleetReport) -> None:
    """A BudgetError (exit 1) when an image of the report is over its max_size."""
    if report.breaches:
        raise budgets.error(report.breaches, building=False)


@dataclass(frozen=True)
class GarbageResult:
    store: GcResult
    caches: CacheGcResult | None  # None: the cache directory was not cleaned


def collect_garbage(
    ws: Workspace,
    keep: int,
    *,
    dry_run: bool = False,
    timeout: float | None = None,
    caches: bool = True,
    all_caches: bool = False,
    reporter: Reporter | None = None,
    cap: int | None = None,
) -> GarbageResult:
    """Remove the blobs no tag reaches (keeping ``keep`` keys per node), then, with
    ``caches`` (or ``all_caches``), the cache entries no known store needs."""
    store = open_store(ws.store)
    result = collect(store, keep, dry_run=dry_run, timeout=timeout, reporter=reporter)
    cache = None
    if caches or all_caches:
        if cap is None:
            cap = cache_max(_manifest_cap(ws))
        cache = collect_caches(
            ws.cache_dir, store, ws.manifest, result, dry_run=dry_run, all_caches=all_caches,
            cap=cap,
        )  # fmt: skip
    return GarbageResult(result, cache)


def _manifest_cap(ws: Workspace) -> int | None:
    """The manifest's ``cache_max``, if there is a readable manifest."""
    try:
        return load_project(ws).cache_max if ws.manifest.is_file() else None
    except LayerforgeError:
        return None


@dataclass(frozen=True)
class ExportOutcome:
    result: WriteResult
    keys: dict[str, str]  # node -> its content-key tag


def export_project(
    kind: str,
    project: Project,
    ws: Workspace,
    options: ExportOptions,
    reporter: Reporter | None = None,
    *,
    rootfs: bool = False,
) -> ExportOutcome:
    """Write the files of exporter ``kind``; with ``rootfs`` (dockerfiles), also the root
    filesystem tarballs of root bases, from the store."""
    ctx = make_context(project, read_lock(project, ws), options, (ws.store, ws.cache_dir))
    result = export(
        kind,
        ctx,
        store=ws.store if rootfs else None,
        cache_dir=ws.cache_dir if rootfs else None,
        reporter=reporter,
    )
    return ExportOutcome(result, {n: ctx.tag(n) for n in project.nodes})


def push_project(
    project: Project,
    ws: Workspace,
    selected: list[str] | None = None,
    reporter: Reporter | None = None,
    extra_tags: tuple[str, ...] = (),
) -> list[PushResult]:
    """Push ``selected`` (default: all, with their ancestors) to project.registry."""
    Target.of(project)  # no registry: a usage error before anything else
    names = project.select(selected) if selected else list(project.nodes)
    store = open_store(ws.store)
    return push_nodes(
        project, store, names, registry_config(), reporter, extra_tags, ci_commit=ci_commit()
    )


def ci_commit() -> str | None:
    """The commit a CI builds (``GITHUB_SHA``, then ``CI_COMMIT_SHA``), for the commit tag of a
    push from a copy without git; None outside CI."""
    for name in ("GITHUB_SHA", "CI_COMMIT_SHA"):
        value = os.environ.get(name, "").strip().lower()
        if re.fullmatch(r"[0-9a-f]{7,64}", value):
            return value
    return None


def sbom_project(project: Project, ws: Workspace, node: str) -> bytes:
    """The SBOM (CycloneDX 1.6 JSON) of ``node:latest`` in the store: the one its build
    wrote, else made now from its layers and the lock, and kept in the store (when the store
    can be written) so that `push` sends it along."""
    if node not in project.nodes:
        raise UsageError(
            f"{project.manifest}: no node {node!r}{did_you_mean(node, list(project.nodes))}",
            hint="`layerforge sbom NODE` takes one base or service of the manifest",
        )
    store = open_store(ws.store)
    record = read_record(store, f"{node}:latest")
    if record is None:
        raise UsageError(
            f"{node} is not built in {ws.store}", hint=f"run `layerforge build {node}` first"
        )
    found = stored_sbom(store, node, record.manifest.digest)
    if found is not None:
        return sbom_bytes(store, found)
    lock, epoch = lockfile.read(ws.lock_path), project.source_date_epoch
    with store.shared():
        _ensure_layers(project, store, record)
        try:
            artifact = write_sbom(store, record, lock, epoch)
            store.tag(sbom_ref(node, record.manifest.digest), artifact.manifest)
        except OSError:  # a read-only store: the document all the same
            return make_sbom(store, record, lock, epoch)
    return sbom_bytes(store, artifact.manifest)


OSV_URL = "https://api.osv.dev"
PYPI_SIMPLE = "https://pypi.org/simple"


def audit_project(
    project: Project,
    ws: Workspace,
    *,
    offline: bool = False,
    db: Path | None = None,
    osv_url: str = OSV_URL,
    index_url: str | None = None,
) -> AuditReport:
    """The audit of the built fleet (see layerforge.audit.run): vulnerabilities from OSV's
    API at ``osv_url``, or from its exports in ``db``; outdated pins from ``index_url`` (else
    the project's index, else PyPI); ``offline`` skips what needs the network."""
    lock = read_lock(project, ws)
    store = open_store(ws.store)
    source: OsvApi | OsvDb | None = None
    skipped = "--offline: OSV's API was not asked (give --db DIR to use its exports)"
    if db is not None:
        source = OsvDb(db)
    elif not offline:
        source = OsvApi(osv_url)
    index = None if offline else (index_url or project.index_url or PYPI_SIMPLE)
    with store.shared():
        return audit(project, lock, store, source, skipped, index)


def check_audit(report: AuditReport, fail_on: str | None) -> None:
    """An AuditError when a vulnerability is at or above ``fail_on``."""
    worst = report.at_or_above(fail_on) if fail_on is not None else ()
    if not worst:
        return
    names = ", ".join(sorted({f"{f.package} {f.version} ({f.id})" for f in worst})[:5])
    raise AuditError(
        f"vulnerabilities at or above {fail_on}: {names}",
        hint="upgrade the packages to a fixed version (`layerforge lock --upgrade`), or "
        "rebase onto a patched OS (`layerforge rebase`)",
    )


def login_registry(registry: str, credential: Credential) -> Path:
    """Check ``credential`` against ``registry``, then store it in the Docker config.json
    (whose path is returned)."""
    return login(registry, credential, registry_config())


def archive_node(
    project: Project, store: Store, node: str, tag: str, output: Path
) -> tuple[str, Archive]:
    """Write ``node:tag`` of ``store`` as a tar for `docker load` at ``output``; returns the
    image name in the archive, and the archive."""
    name = f"{project.name}/{node}:{tag}"
    if project.registry:
        host, namespace = split_namespace(project.registry)
        name = f"{host}/{namespace + '/' if namespace else ''}{node}:{tag}"
    with store.shared():  # gc waits until every blob is in the archive
        if project.registry:
            fetch_missing(project, store, node, registry_config(), tag)
        return name, write_archive(store, f"{node}:{tag}", output, name)


# -- local runs and engines (layerforge run, layerforge load) ---------------------------------


@uses_cache
def run_node(
    project: Project,
    ws: Workspace,
    node: str,
    options: RunOptions,
    reporter: Reporter | None = None,
) -> int:
    """Run ``node``'s image as it is built for the current manifest (its content-key tag
    must be in the store) in the sandbox; returns the program's exit code."""
    reporter = reporter or NullReporter()
    plan = plan_project(project, ws, [node])
    step = next(s for s in plan.steps if s.node == node)
    store = Store.open(ws.store)
    with store.shared():  # gc waits while the image is unpacked and runs
        record = read_record(store, f"{node}:{step.tag}")
        if record is None:
            raise UsageError(
                f"{node} is not built for the current manifest ({step.tag} is not in {ws.store})",
                hint=f"run `layerforge build {node}` first",
            )
        _ensure_layers(project, store, record)
        return run_image(store, record, project.nodes[node], ws.cache_dir, reporter, options)


def load_node(project: Project, store: Store, node: str, tag: str, into: str | None) -> Loaded:
    """Hand ``node:tag`` to a local engine (``into``, default: podman, else docker), its
    manifest digest kept (checked after the load)."""
    engine = pick_engine(into)
    name = archive_name(project, node, tag)
    with store.shared():  # gc waits until every blob is streamed
        if project.registry:
            fetch_missing(project, store, node, registry_config(), tag)
        return load_image(store, f"{node}:{tag}", name, engine)
