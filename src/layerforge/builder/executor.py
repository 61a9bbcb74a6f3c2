"""Run a plan: build every step in dependency order, siblings in parallel.

Per node: the parent's layers unchanged; for a root base its OS layer(s) and the /opt/venv
skeleton; the Python dependency layers (reused from the layer cache when the same locked
distributions were installed before; else a large distribution's own layer is still reused
by wheel, see layerforge.builder.distcache, and uv installs only the others); for a service,
one application layer. Then config, manifest, its SBOM (an artifact tagged
``NODE:sha256-<hex of the manifest>``, see layerforge.sbom), tags ``NODE:latest`` and
``NODE:lf-<key12>``, and the build record.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from layerforge import cachedir, proc
from layerforge.builder import budgets, rebase, runtime_layer, user_layer
from layerforge.builder import python as pydeps
from layerforge.builder.context import BuildContext, NodeResult, Outcome
from layerforge.builder.deps import dependency_layers as _dependency_layers
from layerforge.builder.layercache import cache_key as _cache_key
from layerforge.builder.layercache import cached_layers as _cached_layers
from layerforge.builder.layercache import remember_layers as _remember_layers
from layerforge.builder.layercache import write as _write
from layerforge.builder.python import venv_env
from layerforge.builder.relabel import relabel
from layerforge.errors import BuildError, LayerforgeError, LockError, StoreError
from layerforge.events import Event
from layerforge.events import step as timed
from layerforge.lock.inputs import check_libc, system_lock_doc
from layerforge.lock.lockfile import DebPackage
from layerforge.manifest import Node
from layerforge.oci.image import ImageSpec, assemble, created_at, merge_env
from layerforge.oci.layer import Layer
from layerforge.oci.layout import Descriptor, Store
from layerforge.oci.tarball import Entry
from layerforge.plan import Plan, Step, short
from layerforge.records import (
    KEY_ANNOTATION,
    NODE_ANNOTATION,
    ImageRecord,
    read_record,
    write_record,
)
from layerforge.sandbox import system as sysl
from layerforge.sandbox.system import Sandbox, SystemSpec, system_layer
from layerforge.sandbox.verify import verify_image
from layerforge.sbom.attach import sbom_ref, write_sbom
from layerforge.sources import debian
from layerforge.sources.base import BaseImage, SourceContext
from layerforge.sources.materialize import materialize
from layerforge.sourcetree import SourceTree


def execute(plan: Plan, ctx: BuildContext) -> dict[str, NodeResult]:
    """Build the plan's steps; returns results in plan order."""
    results: dict[str, NodeResult] = {}
    steps = {s.node: s for s in plan.steps}
    pending: dict[str, Future[NodeResult]] = {}
    with ThreadPoolExecutor(max_workers=max(1, ctx.jobs), thread_name_prefix="lf-build") as pool:
        try:
            while len(results) < len(steps):
                for name, step in steps.items():
                    if name in results or name in pending:
                        continue
                    if step.parent is None or step.parent in results or step.parent not in steps:
                        pending[name] = pool.submit(_run_step, step, ctx, results)
                done, _ = wait(list(pending.values()), return_when=FIRST_EXCEPTION)
                for name in [n for n, f in pending.items() if f in done]:
                    results[name] = pending.pop(name).result()
        except KeyboardInterrupt:
            # only this thread sees Ctrl-C: stop the workers (their programs are terminated,
            # their layer writes end at the next chunk) rather than wait for them to finish
            proc.request_stop()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    _report_breaches(plan, ctx)
    recheck(ctx.store, plan, results, remote_layers=ctx.project.registry is not None)
    return {s.node: results[s.node] for s in plan.steps}


def recheck(
    store: Store, plan: Plan, results: dict[str, NodeResult], *, remote_layers: bool
) -> None:
    """Before a build reports success: every content-key tag it wrote or reused still names
    its image, and every blob of that image is in the store with its size; else a BuildError.
    ``remote_layers`` (the project has a registry): layers may be absent, as those of a
    remote-cache hit stay in the registry until push, verify or export fetch them."""
    problems: list[str] = []
    for step in plan.steps:
        record = results[step.node].record
        ref = f"{step.node}:{step.tag}"
        desc = store.resolve(ref)
        if desc is None or desc.digest != record.manifest.digest:
            problems.append(f"{ref} no longer names {record.manifest.digest}")
        else:
            found = store.image_problems(desc, layers=not remote_layers)
            problems += [f"{ref}: blob {p}" for p in found]
    if problems:
        raise BuildError(
            f"the store {store.root} lost parts of the images this build wrote:\n  "
            + "\n  ".join(
                problems[:10] + ([f"... {len(problems) - 10} more"] if len(problems) > 10 else [])
            ),
            hint="something removed them during the build (a gc of a layerforge older than "
            "the store lock, or by hand); run `layerforge build` again",
        )


def _run_step(step: Step, ctx: BuildContext, results: dict[str, NodeResult]) -> NodeResult:
    started = time.perf_counter()
    ref = f"{step.node}:{step.tag}"
    if step.status == "cached":
        record = read_record(ctx.store, ref)
        if record is not None:
            if _check_budget(ctx, ctx.project.nodes[step.node], record):
                ctx.store.tag(f"{step.node}:latest", record.manifest)
            ctx.reporter.emit(Event("info", f"build:{step.node}", "cached", data={"key": step.key}))
            return NodeResult(step.node, "cached", record, time.perf_counter() - started)
    parent = results[step.parent].record if step.parent else None
    if step.status == "relabel":
        record = read_record(ctx.store, ref)
        if record is not None:
            record = _relabelled(step, ctx, record, parent)
            return NodeResult(step.node, "relabelled", record, time.perf_counter() - started)
    if step.status == "remote" and ctx.remote is not None:
        with timed(ctx.reporter, f"pull:{step.node}", f"fetching {step.node} from the registry"):
            record = ctx.remote.fetch(step, ctx.store, parent)
        # pushed with other labels (an older version) or under a parent relabelled here
        record = _relabelled(step, ctx, record, parent)
        return NodeResult(step.node, "remote", record, time.perf_counter() - started)
    task = f"build:{step.node}"
    ctx.reporter.emit(Event("start", task, f"building {step.node}", data={"key": step.key}))
    try:
        record, written = _build_node(step, ctx, parent)
    except LayerforgeError:
        ctx.reporter.emit(Event("finish", task, data={"ok": False}))
        raise
    seconds = time.perf_counter() - started
    ctx.reporter.emit(Event("finish", task, f"built in {seconds:.1f}s", data={"ok": True}))
    outcome: Outcome = "rebased" if step.status == "rebase" else "built"
    return NodeResult(step.node, outcome, record, seconds, written)


def _build_node(
    step: Step, ctx: BuildContext, parent: ImageRecord | None
) -> tuple[ImageRecord, int]:
    node = ctx.project.nodes[step.node]
    new_layers: list[Layer] = []
    previous = rebase.previous_image(ctx.store, node.name) if step.status == "rebase" else None
    if parent is None:
        base = _os_base(node, ctx)
        parent_layers, parent_config, env = base.layers, None, list(base.env)
        python = base.python
        if previous is not None:  # before anything is written: the interpreter must be the same
            rebase.ensure_same_interpreter(ctx.store, node.section, previous, base.layers, python)
        new_layers.append(_venv_layer(ctx, python.executable, python.version))
    else:
        parent_layers, parent_config = parent.layers, parent.config
        env, python = parent.env, parent.python
    if node.system or node.run:
        image_env = merge_env(env, venv_env(env))
        new_layers.append(_system_layer(ctx, node, (*parent_layers, *new_layers), image_env))
    kept = _kept_layers(ctx, node, previous)
    if kept is not None:  # a rebase: the Python, runtime and app layers of the previous image
        new_layers.extend(kept)
    else:
        own_writable, app_writable = user_layer.split_writable(
            node.writable, node.workdir, node.source is not None
        )
        if user_layer.needed(node.user, own_writable):  # below the wheels: cheap to read
            below = (*parent_layers, *new_layers)
            new_layers.append(_user_layer(ctx, node, own_writable, below))
        below = (*parent_layers, *new_layers)  # the image the wheels land in
        new_layers.extend(_upper_layers(ctx, node, python.version, below, app_writable))
    updates = venv_env(env)
    if node.source is not None and node.workdir:
        updates.append(("PYTHONPATH", node.workdir))
    image_task = f"image:{node.name}"  # config, manifest, record and tags
    with timed(ctx.reporter, image_task, f"assembling {node.name}"):
        spec = _image_spec(step, ctx, node, merge_env(env, [*updates, *node.env]), parent)
        image = assemble(ctx.store, spec, parent_config, parent_layers, new_layers)
    record = ImageRecord(node.name, step.key, image.manifest, image.config, image.layers, python)
    within = _check_budget(ctx, node, record)
    if ctx.verify and within:  # before tagging: an image that fails its checks gets no tag
        verify_image(ctx.store, record, node, ctx.cache_dir, ctx.reporter, ctx.runner,
                     writable=ctx.project.writable_above(node.name))  # fmt: skip
    # the record first: a build stopped between the two leaves an untagged record, never a
    # tag without its record (verify and push would call that node "not built")
    with timed(ctx.reporter, image_task, f"tagging {node.name}"):
        write_record(ctx.store.root, record, step.inputs.to_json())
        if within:  # else: no tag; its children still build, so that one error names all
            ctx.store.tag_many({f"{node.name}:{step.tag}": record.manifest,
                                f"{node.name}:latest": record.manifest,
                                **_sbom_tag(ctx, record)})  # fmt: off
    return record, sum(layer.descriptor.size for layer in new_layers if layer not in (kept or ()))


def _upper_layers(
    ctx: BuildContext,
    node: Node,
    python: str,
    below: tuple[Layer, ...],
    app_writable: tuple[str, ...],
) -> list[Layer]:
    """The dependency layers, the runtime layer and the app layer (each only if any)."""
    layers: list[Layer] = []
    packages = ctx.lock.nodes[node.name].packages
    if packages:
        layers.extend(_dependency_layers(ctx, node, packages, python, below))
    layers.extend(_runtime_layer(ctx, node, python))  # runtime groups: pins only
    if node.source is not None:
        layers.append(_app_layer(ctx, node, ctx.trees[node.name], app_writable))
    return layers


def _kept_layers(
    ctx: BuildContext, node: Node, previous: ImageRecord | None
) -> tuple[Layer, ...] | None:
    """A rebase's layers kept by descriptor; None (with a warning) builds the node in full."""
    if previous is None:
        return None
    kept = rebase.kept_layers(ctx.store, previous, has_system=bool(node.system or node.run))
    if kept is None:
        message = "its previous image cannot be rebased (layers missing): built in full"
        ctx.reporter.emit(Event("warning", f"build:{node.name}", message))
    return kept


def _sbom_tag(ctx: BuildContext, record: ImageRecord) -> dict[str, Descriptor]:
    """The image's SBOM, written into the store (tagged with the image by the caller); none,
    with a warning, when a layer is not in the store (a base reused from the registry)."""
    if not ctx.sbom:
        return {}
    try:
        artifact = write_sbom(ctx.store, record, ctx.lock, ctx.project.source_date_epoch)
    except StoreError as exc:
        message = f"no SBOM for this image: {exc.message}"
        ctx.reporter.emit(Event("warning", f"build:{record.node}", message))
        return {}
    return {sbom_ref(record.node, record.manifest.digest): artifact.manifest}


def _relabelled(
    step: Step, ctx: BuildContext, record: ImageRecord, parent: ImageRecord | None
) -> ImageRecord:
    """The stored image of ``step.key`` with the step's labels: a new config and manifest,
    the record, then the tags (no layer, no verify: the layers are the ones it had)."""
    node = ctx.project.nodes[step.node]
    new = relabel(ctx.store, record, node, step.inputs.labels, parent)
    if new is record:
        return record
    within = _check_budget(ctx, node, new)
    write_record(ctx.store.root, new, step.inputs.to_json())
    if within:  # else: no tag (the breach is reported with the others at the end)
        ctx.store.tag_many({f"{node.name}:{step.tag}": new.manifest,
                            f"{node.name}:latest": new.manifest})  # fmt: off
    ctx.reporter.emit(Event("info", f"build:{node.name}", "relabelled", data={"key": step.key}))
    return new


def _check_budget(ctx: BuildContext, node: Node, record: ImageRecord) -> bool:
    """max_size: note a breach (every one is reported at the end of the build, see
    :func:`_report_breaches`); True if the image may be tagged (within its budget, or
    --allow-oversize)."""
    breach = budgets.check(node, record)
    if breach is None:
        return True
    ctx.breaches.append(breach)
    return ctx.allow_oversize


def _report_breaches(plan: Plan, ctx: BuildContext) -> None:
    """Every image over its budget in one error (none of them was tagged), or in one warning
    line with --allow-oversize."""
    if not ctx.breaches:
        return
    order = {s.node: i for i, s in enumerate(plan.steps)}
    breaches = sorted(ctx.breaches, key=lambda b: order.get(b.node, len(order)))
    if not ctx.allow_oversize:
        raise budgets.error(breaches, building=True)
    ctx.reporter.emit(Event("warning", "budgets", budgets.summary(breaches)))


def _image_spec(
    step: Step, ctx: BuildContext, node: Node, env: list[str], parent: ImageRecord | None
) -> ImageSpec:
    epoch = ctx.project.source_date_epoch
    annotations = {
        "org.opencontainers.image.created": created_at(epoch),
        "org.opencontainers.image.title": node.name,
        KEY_ANNOTATION: step.key,
        NODE_ANNOTATION: node.name,
    }
    if parent is not None:
        annotations["org.opencontainers.image.base.name"] = f"{parent.node}:{short(parent.key)}"
        annotations["org.opencontainers.image.base.digest"] = parent.manifest.digest
    version, revision = step.inputs.labels.get("version"), step.inputs.labels.get("revision")
    if version:
        annotations["org.opencontainers.image.version"] = version
    if revision:
        annotations["org.opencontainers.image.revision"] = revision
    labels = {k: v for k, v in annotations.items() if k.startswith("org.opencontainers")}
    labels.update(dict(node.labels))
    return ImageSpec(
        epoch=epoch,
        env=env,
        cmd=list(node.command) if node.command is not None else None,
        entrypoint=runtime_layer.entrypoint(node),  # the launcher where groups are declared
        workdir=node.workdir,
        labels=labels,
        annotations=annotations,
        user=node.user.spec if node.user is not None and not node.user.inherited else None,
        exposed_ports=node.expose,
        healthcheck=node.healthcheck.config() if node.healthcheck is not None else None,
    )


def _os_base(node: Node, ctx: BuildContext) -> BaseImage:
    assert node.os_source is not None
    locked = ctx.lock.nodes[node.name].os_identity
    rows = pin.os if (pin := ctx.lock.nodes[node.name].source) is not None else ()
    source_ctx = replace(_source_ctx(ctx), pinned=locked, os_rows=rows)
    image = materialize(node.os_source, source_ctx, node.section, refresh=False)
    libc = image.libc.describe() if image.libc is not None else None
    check_libc(ctx.project, ctx.lock.nodes, node.name, libc)  # no wheel newer than this OS
    if locked is not None and locked != image.identity:
        raise BuildError(
            f"{node.section}: the OS source {node.os_source.describe()} is not the one the lock "
            f"was made from ({image.identity[:19]} != {locked[:19]})",
            hint="run `layerforge lock --upgrade` to take the new OS source",
        )
    pin = ctx.lock.nodes[node.name].source
    if pin is not None and pin.libc != libc:
        raise LockError(
            f"{node.section}: layerforge.lock predates libc detection (its OS source "
            f"{node.os_source.describe()} has {libc}, which decides the platform wheels are "
            "resolved for)",
            hint="run `layerforge lock` (and commit layerforge.lock)",
        )
    return image


def _source_ctx(ctx: BuildContext) -> SourceContext:
    return SourceContext(
        ctx.store,
        ctx.cache_dir,
        ctx.reporter,
        ctx.project.python,
        ctx.compression,
        ctx.project.source_date_epoch,
        registry=ctx.registry,
    )


# -- cached layer groups (layercache: keys and index; deps: the dependency layers) ------------


def _venv_layer(ctx: BuildContext, executable: str, version: str) -> Layer:
    key = _cache_key(ctx.layers, {"venv": [executable, version]})
    cached = _cached_layers(ctx.layers, key)
    if cached:
        return cached[0]
    entries = pydeps.venv_entries(executable, version)
    layer = _write(
        ctx.layers, "layer:venv", entries, f"layerforge: venv /opt/venv (python {version})"
    )
    _remember_layers(ctx.layers, key, [layer])
    return layer


def _system_layer(
    ctx: BuildContext, node: Node, parent_layers: tuple[Layer, ...], env: list[str]
) -> Layer:
    """apt packages and run steps in the sandbox, as one layer (cached like the others)."""
    tree = ctx.trees.get(node.name) if node.context else None
    locked = ctx.lock.nodes[node.name].system
    spec = SystemSpec(node.section, node.system, node.run, node.network, node.context,
                      node.build_system, locked)  # fmt: skip
    what: dict[str, Any] = {
        "system": [list(node.system), list(node.run), node.network],
        "context": tree.digest if tree else None,
        "chain": [x.descriptor.digest for x in parent_layers],
    }
    if node.build_system:  # only when declared: other system layers keep their keys
        what["build_system"] = list(node.build_system)
    if locked:  # lock version 2: exactly these .debs (other layers keep their keys)
        what["system_lock"] = system_lock_doc(locked)
    key = _cache_key(ctx.layers, what)
    cached = _cached_layers(ctx.layers, key)
    if cached:
        return cached[0]
    made_before = sysl.machine_cached(ctx.store, ctx.cache_dir, key)
    if made_before is not None:
        _remember_layers(ctx.layers, key, [made_before])
        return made_before
    sandbox = Sandbox(ctx.store, ctx.cache_dir, ctx.reporter, ctx.runner,
                      ctx.project.source_date_epoch)  # fmt: skip
    label = ", ".join([*node.system[:3], *(["run steps"] if node.run else [])])
    with _locked_repo(ctx, node, locked) as repo:
        layer = system_layer(
            spec, parent_layers, env, sandbox,
            lambda entries: _write(ctx.layers, f"layer:{node.name}:system", entries,
                                   f"layerforge: system ({label})"),
            repo,
        )  # fmt: skip
    _remember_layers(ctx.layers, key, [layer])
    sysl.remember(ctx.store, ctx.cache_dir, key, layer)
    return layer


@contextmanager
def _locked_repo(
    ctx: BuildContext, node: Node, locked: tuple[DebPackage, ...]
) -> Iterator[Path | None]:
    """A local apt repository of the locked .debs of ``node``'s system step (fetched into the
    cache first; every one the archive no longer serves is named at once)."""
    if not locked:
        yield None
        return
    debs = debian.fetch_debs(locked, debian.default_mirror(), ctx.cache_dir, node.section)
    stage = cachedir.STAGE.path(ctx.cache_dir)
    stage.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="debs-", dir=stage))
    try:
        debian.flat_repo(locked, debs, work / "repo", sysl.REPO)
        yield work / "repo"
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _user_layer(
    ctx: BuildContext, node: Node, writable: tuple[str, ...], below: tuple[Layer, ...]
) -> Layer:
    """The node's user and writable directories (builder/user_layer.py), cached like the
    system layer: by what it is made of and the chain it lands on."""
    user = node.user
    key = _cache_key(ctx.layers, {
        "user": user.key_doc() if user is not None and not user.inherited else None,
        "owner": user.spec if user is not None else None,
        "writable": list(writable),
        "chain": [x.descriptor.digest for x in below],
    })  # fmt: skip
    cached = _cached_layers(ctx.layers, key)
    if cached:
        return cached[0]
    own = user is not None and not user.inherited and not user.is_root
    accounts = user_layer.read_accounts(ctx.store, below) if own else {}
    entries = user_layer.user_entries(user, writable, accounts, section=node.section)
    layer = _write(ctx.layers, f"layer:{node.name}:user", entries,
                   user_layer.created_by(user, writable), parents=False)  # fmt: skip
    _remember_layers(ctx.layers, key, [layer])
    return layer


def _runtime_layer(ctx: BuildContext, node: Node, python: str) -> list[Layer]:
    entries, label = runtime_layer.layer_for(ctx.lock, ctx.project, node.name, python)
    return [_write(ctx.layers, f"layer:{node.name}:runtime", entries, label)] if entries else []


def _app_layer(
    ctx: BuildContext, node: Node, tree: SourceTree, writable: tuple[str, ...] = ()
) -> Layer:
    assert node.workdir is not None
    prefix = node.workdir.strip("/")
    entries = [Entry(prefix, "dir", 0o755)] if prefix else []
    for f in tree.files:
        member = f"{prefix}/{f.path}" if prefix else f.path
        if f.link is not None:
            entries.append(Entry(member, "symlink", 0o777, linkname=f.link))
        else:
            entries.append(Entry(member, "file", f.mode, f.size, source=tree.root / f.path))
    entries = user_layer.owned_app_entries(entries, node.user, writable)
    return _write(ctx.layers, f"layer:{node.name}:app", entries, f"layerforge: COPY {node.workdir}")
