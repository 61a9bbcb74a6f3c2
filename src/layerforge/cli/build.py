"""``layerforge plan``, ``layerforge build`` and ``layerforge rebase``.

Each CLI verb parses its options, calls one function of :mod:`layerforge.api`, and renders
the result (rich tables, or one JSON document with ``--json``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from layerforge.cli import options as c
from layerforge.cli import registry as cr
from layerforge.cli import runtime as rt
from layerforge.cli.report import print_timings
from layerforge.events import step
from layerforge.sizes import format_size

REVISION_HELP = "Source revision recorded in the images (a label: not part of the content key)."


@click.command()
@c.common
@click.argument("nodes", nargs=-1, shell_complete=c.complete_nodes)
@click.option("--revision", default=None, help=REVISION_HELP)
@c.remote_cache_option
@click.option(
    "--rebase",
    "rebase_",
    is_flag=True,
    help="Show the plan of `layerforge rebase`: nodes whose only change is the OS below them "
    "are `rebase` steps (OS and system layers renewed, the others kept).",
)
def plan(
    manifest: Path | None,
    store: Path | None,
    cache_dir: Path | None,
    as_json: bool,
    nodes: tuple[str, ...],
    revision: str | None,
    remote_cache: bool,
    rebase_: bool,
) -> None:
    """Show each node's content key, whether the store has it, and why it must be built."""
    from layerforge import api  # noqa: PLC0415

    ws = c.workspace(manifest, store, cache_dir)
    project = api.load_project(ws)
    remote = c.registry_cache(project, remote_cache, c.reporter(as_json), ws.cache_dir)
    options = api.PlanOptions(revision=revision, rebase=rebase_)
    result = api.plan_project(project, ws, list(nodes), options, None if rebase_ else remote)
    groups = rt.lock_summaries(ws, project, [s.node for s in result.steps])
    if as_json:
        c.emit_json({"steps": [_step_json(s) for s in result.steps], **rt.runtime_doc(groups)})
        return
    _print_plan(c.console(), result)
    rt.print_runtime(c.console(), groups)


@click.command()
@c.common
@click.argument("nodes", nargs=-1, shell_complete=c.complete_nodes)
@c.jobs_option
@click.option("--revision", default=None, help=REVISION_HELP)
@click.option("--dry-run", is_flag=True, help="Show the plan; build nothing.")
@click.option("--allow-oversize", is_flag=True, help="Warn, not fail, when over max_size.")
@c.remote_cache_option
@click.option(
    "--push", "push_after", is_flag=True, help="Push the built images to project.registry."
)
@click.option("--no-verify", is_flag=True, help="Do not run the verify statements of each node.")
@click.option(
    "--no-sbom",
    is_flag=True,
    help="Do not write an SBOM for each built image (`layerforge sbom NODE` makes one later).",
)
@c.runner_option
def build(
    manifest: Path | None,
    store: Path | None,
    cache_dir: Path | None,
    as_json: bool,
    nodes: tuple[str, ...],
    jobs: int,
    revision: str | None,
    dry_run: bool,
    allow_oversize: bool,
    remote_cache: bool,
    push_after: bool,
    no_verify: bool,
    no_sbom: bool,
    runner: str | None,
) -> None:
    """Build NODES (default: all) and their ancestors into the local store."""
    from layerforge import api  # noqa: PLC0415

    with api.TimingReporter(c.reporter(as_json), started=c.started()) as rep:
        with step(rep, "phase:load", "loading the project"):
            ws = c.workspace(manifest, store, cache_dir)
            project = api.load_project(ws)
            options = api.PlanOptions(revision=revision)
            remote = c.registry_cache(project, remote_cache, c.reporter(as_json), ws.cache_dir)
        if dry_run:
            planned = api.plan_project(project, ws, list(nodes), options, remote)
        else:
            _plan, results = api.build_project(
                project, ws, list(nodes), options, rep, jobs, remote,
                allow_oversize=allow_oversize, verify=not no_verify, runner=runner,
                sbom=not no_sbom,
            )  # fmt: skip
    if dry_run:
        if as_json:
            c.emit_json({"steps": [_step_json(s) for s in planned.steps]})
        else:
            _print_plan(c.console(), planned)
        return
    timings = rep.timings()  # of the build (a push after it reports its own)
    pushed = _push_after(ws, project, list(results), as_json) if push_after else None
    images = [_result_json(r) for r in results.values()]
    if as_json:
        doc = {"store": str(ws.store), "images": images, "timings": timings.to_json()}
        c.emit_json({**doc, **({"push": pushed} if pushed else {})})
        return
    _print_build(c.console(), results, ws.store)
    print_timings(c.console(), timings)


@click.command()
@c.common
@click.argument("nodes", nargs=-1)
@c.jobs_option
@click.option(
    "--push", "push_after", is_flag=True, help="Push the rebased images to project.registry."
)
@click.option("--no-verify", is_flag=True, help="Do not run the verify statements of each node.")
@c.runner_option
def rebase(
    manifest: Path | None,
    store: Path | None,
    cache_dir: Path | None,
    as_json: bool,
    nodes: tuple[str, ...],
    jobs: int,
    push_after: bool,
    no_verify: bool,
    runner: str | None,
) -> None:
    """Put the built images of NODES (default: all) on their changed OS without reinstalling
    Python: OS and system layers renewed, Python, runtime and app layers kept; refused when
    the interpreter changed or a node needs more than a new OS."""
    from layerforge import api  # noqa: PLC0415

    ws = c.workspace(manifest, store, cache_dir)
    project = api.load_project(ws)
    with api.TimingReporter(c.reporter(as_json)) as rep:
        _plan, results = api.rebase_project(
            project, ws, list(nodes), rep, jobs, verify=not no_verify, runner=runner
        )
    pushed = _push_after(ws, project, list(results), as_json) if push_after else None
    images = [_result_json(r) for r in results.values()]
    if as_json:
        doc = {"store": str(ws.store), "images": images, "timings": rep.timings().to_json()}
        c.emit_json({**doc, **({"push": pushed} if pushed else {})})
        return
    _print_build(c.console(), results, ws.store)
    print_timings(c.console(), rep.timings())


def _push_after(ws: Any, project: Any, nodes: list[str], as_json: bool) -> dict[str, Any]:
    pushed = cr.run_push(ws, project, nodes, as_json)
    if not as_json:
        cr.print_push(pushed, str(project.registry))
    return cr.push_json(pushed, str(project.registry))


# -- rendering ----------------------------------------------------------------------------------


_PLAN_STATUS = {
    "cached": "[green]cached[/]",
    "remote": "[cyan]in registry[/]",
    "relabel": "[green]relabel[/]",
    "rebase": "[magenta]rebase[/]",
}
_BUILD_STATUS = {
    "cached": "[green]cached[/]",
    "remote": "[cyan]from registry[/]",
    "relabelled": "[green]relabelled[/]",
    "rebased": "[magenta]rebased[/]",
}


def _step_json(step: Any) -> dict[str, Any]:
    return {
        "node": step.node,
        "kind": step.kind,
        "key": step.key,
        "tag": step.tag,
        "status": step.status,
        "reasons": list(step.reasons),
        "parent": step.parent,
    }


def _print_plan(console: Any, plan: Any) -> None:
    from rich.table import Table  # noqa: PLC0415

    table = Table(title="plan", title_justify="left")
    for col in ("node", "key", "status", "why"):
        table.add_column(col)
    for s in plan.steps:
        status = _PLAN_STATUS.get(s.status, "[yellow]build[/]")
        table.add_row(s.node, s.tag, status, "; ".join(s.reasons))
    console.print(table)


def _result_json(r: Any) -> dict[str, Any]:
    layers = r.record.layers
    return {
        "node": r.node,
        "status": r.status,
        "key": r.record.key,
        "manifest": r.record.manifest.digest,
        "layers": len(layers),
        "size": sum(x.descriptor.size for x in layers),
        "uncompressed_size": sum(x.uncompressed_size for x in layers),
        "seconds": round(r.seconds, 3),
        "written": r.new_bytes,
    }


def _print_build(console: Any, results: dict[str, Any], store: Path) -> None:
    from rich.table import Table  # noqa: PLC0415

    table = Table(title=f"images in {store}", title_justify="left")
    for col, justify in (
        ("image", "left"),
        ("layers", "right"),
        ("size", "right"),
        ("key", "left"),
        ("status", "left"),
        ("time", "right"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in results.values():
        doc = _result_json(r)
        status = _BUILD_STATUS.get(r.status, "[yellow]built[/]")
        table.add_row(
            f"{r.node}:latest",
            str(doc["layers"]),
            format_size(doc["size"]),
            r.record.key.split(":", 1)[1][:12],
            status,
            f"{r.seconds:.2f}s",
        )
    console.print(table)
