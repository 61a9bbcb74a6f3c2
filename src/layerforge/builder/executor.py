"""Run a plan: build every step in dependency order, siblings in parallel.

Per node: the parent's layers unchanged; for a root base its OS layer(s) and the /opt/venv
skeleton; the Python dependency layers (reused from the layer cache when the same locked
distributions were installed before; else a large distribution's own layer is still reused
by wheel, see layerforge.builder.distcache, and uv installs only the others); for a service,
one application layer. Then config, manifest, tags ``NODE:latest`` and ``NODE:lf-<key12>``,
and the build record.
"""

from __future__ import annotations

import time
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import replace
from typing import Any

from layerforge import proc
from layerforge.builder import budgets, runtime_layer
from layerforge.builder import python as pydeps
from layerforge.builder.context import BuildContext, NodeResult
from layerforge.builder.deps import dependency_layers as _dependency_layers
from layerforge.builder.layercache import cache_key as _cache_key
from layerforge.builder.layercache import cached_layers as _cached_layers
from layerforge.builder.layercache import remember_layers as _remember_layers
from layerforge.builder.layercache import write as _write
from layerforge.builder.python import venv_env
from layerforge.builder.relabel import relabel
from layerforge.errors import BuildError, LayerforgeError, LockError
from layerforge.events import Event
from layerforge.lock.inputs import check_libc
from layerforge.manifest import Node
from layerforge.oci.image import ImageSpec, assemble, created_at, merge_env
from layerforge.oci.layer import Layer
from layerforge.oci.layout import Store
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
            _check_budget(ctx, ctx.project.nodes[step.node], record)
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
    return NodeResult(step.node, "built", record, seconds, written)


def _build_node(
    step: Step, ctx: BuildContext, parent: ImageRecord | None
) -> tuple[ImageRecord, int]:
    node = ctx.project.nodes[step.node]
    new_layers: list[Layer] = []
    if parent is None:
        base = _os_base(node, ctx)
        parent_layers, parent_config, env = base.layers, None, list(base.env)
        python = base.python
        new_layers.append(_venv_layer(ctx, python.executable, python.version))
    else:
        parent_layers, parent_config = parent.layers, parent.config
        env, python = parent.env, parent.python
    if node.system or node.run:
        image_env = merge_env(env, venv_env(env))
        new_layers.append(_system_layer(ctx, node, (*parent_layers, *new_layers), image_env))
    packages = ctx.lock.nodes[node.name].packages
    if packages:
        below = (*parent_layers, *new_layers)  # the image the wheels land in
        new_layers.extend(_dependency_layers(ctx, node, packages, python.version, below))
    new_layers.extend(_runtime_layer(ctx, node, python.version))  # runtime groups: pins only
    if node.source is not None:
        new_layers.append(_app_layer(ctx, node, ctx.trees[node.name]))
    updates = venv_env(env)
    if node.source is not None and node.workdir:
        updates.append(("PYTHONPATH", node.workdir))
    spec = _image_spec(step, ctx, node, merge_env(env, [*updates, *node.env]), parent)
    image = assemble(ctx.store, spec, parent_config, parent_layers, new_layers)
    record = ImageRecord(node.name, step.key, image.manifest, image.config, image.layers, python)
    _check_budget(ctx, node, record)
    if ctx.verify:  # before tagging: an image that fails its checks gets no tag
        verify_image(ctx.store, record, node, ctx.cache_dir, ctx.reporter, ctx.runner)
    # the record first: a build stopped between the two leaves an untagged record, never a
    # tag without its record (verify and push would call that node "not built")
    write_record(ctx.store.root, record, step.inputs.to_json())
    ctx.store.tag_many({f"{node.name}:{step.tag}": record.manifest,
                        f"{node.name}:latest": record.manifest})  # fmt: off
    return record, sum(layer.descriptor.size for layer in new_layers)


def _relabelled(
    step: Step, ctx: BuildContext, record: ImageRecord, parent: ImageRecord | None
) -> ImageRecord:
    """The stored image of ``step.key`` with the step's labels: a new config and manifest,
    the record, then the tags (no layer, no verify: the layers are the ones it had)."""
    node = ctx.project.nodes[step.node]
    new = relabel(ctx.store, record, node, step.inputs.labels, parent)
    if new is record:
        return record
    _check_budget(ctx, node, new)
    write_record(ctx.store.root, new, step.inputs.to_json())
    ctx.store.tag_many({f"{node.name}:{step.tag}": new.manifest,
                        f"{node.name}:latest": new.manifest})  # fmt: off
    ctx.reporter.emit(Event("info", f"build:{node.name}", "relabelled", data={"key": step.key}))
    return new


def _check_budget(ctx: BuildContext, node: Node, record: ImageRecord) -> None:
    """max_size: fail before tagging an oversize image, or warn with --allow-oversize."""
    breach = budgets.check(node, record)
    if breach is None:
        return
    if not ctx.allow_oversize:
        raise budgets.error([breach], building=True)
    ctx.reporter.emit(Event("warning", f"build:{node.name}", breach.describe()))


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
    )


def _os_base(node: Node, ctx: BuildContext) -> BaseImage:
    assert node.os_source is not None
    locked = ctx.lock.nodes[node.name].os_identity
    source_ctx = replace(_source_ctx(ctx), pinned=locked)
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
    spec = SystemSpec(node.section, node.system, node.run, node.network, node.context,
                      node.build_system)  # fmt: skip
    what: dict[str, Any] = {
        "system": [list(node.system), list(node.run), node.network],
        "context": tree.digest if tree else None,
        "chain": [x.descriptor.digest for x in parent_layers],
    }
    if node.build_system:  # only when declared: other system layers keep their keys
        what["build_system"] = list(node.build_system)
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
    layer = system_layer(
        spec, parent_layers, env, sandbox,
        lambda entries: _write(ctx.layers, f"layer:{node.name}:system", entries,
                               f"layerforge: system ({label})"),
    )  # fmt: skip
    _remember_layers(ctx.layers, key, [layer])
    sysl.remember(ctx.store, ctx.cache_dir, key, layer)
    return layer


def _runtime_layer(ctx: BuildContext, node: Node, python: str) -> list[Layer]:
    entries, label = runtime_layer.layer_for(ctx.lock, ctx.project, node.name, python)
    return [_write(ctx.layers, f"layer:{node.name}:runtime", entries, label)] if entries else []


def _app_layer(ctx: BuildContext, node: Node, tree: SourceTree) -> Layer:
    assert node.workdir is not None
    prefix = node.workdir.strip("/")
    entries = [Entry(prefix, "dir", 0o755)] if prefix else []
    for f in tree.files:
        member = f"{prefix}/{f.path}" if prefix else f.path
        if f.link is not None:
            entries.append(Entry(member, "symlink", 0o777, linkname=f.link))
        else:
            entries.append(Entry(member, "file", f.mode, f.size, source=tree.root / f.path))
    return _write(ctx.layers, f"layer:{node.name}:app", entries, f"layerforge: COPY {node.workdir}")
