"""The CLI verbs. Each parses its options, calls one function of :mod:`layerforge.api`,
and renders the result (rich tables, or one JSON document with ``--json``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from layerforge import cliutil as c
from layerforge import commands_report
from layerforge import commands_runtime as rt
from layerforge.commands_registry import REGISTRY_COMMANDS
from layerforge.commands_verify import verify as verify_cmd
from layerforge.sizes import format_size


@click.command()
@click.argument("directory", type=click.Path(path_type=Path), default=".")
@click.option("--name", default=None, help="Project name (default: the directory name).")
def init(directory: Path, name: str | None) -> None:
    """Write a starter layerforge.toml in DIRECTORY."""
    from layerforge.manifest.starter import write_starter  # noqa: PLC0415

    path = write_starter(directory.resolve(), name)
    click.echo(f"wrote {path}; next: `layerforge lock`, then `layerforge build`")


@click.command()
@c.common
@click.option("--check", is_flag=True, help="Exit 2 if layerforge.lock is stale; write nothing.")
@click.option("--upgrade", is_flag=True, help="Re-resolve every node to the newest versions.")
@click.option(
    "--upgrade-package",
    "-P",
    "upgrade_packages",
    multiple=True,
    metavar="NAME",
    help="Let only this package move (repeatable).",
)
def lock(
    manifest: Path | None,
    store: Path | None,
    cache_dir: Path | None,
    as_json: bool,
    check: bool,
    upgrade: bool,
    upgrade_packages: tuple[str, ...],
) -> None:
    """Resolve every node with uv and write layerforge.lock."""
    from layerforge import api  # noqa: PLC0415
    from layerforge.errors import LockError, UsageError  # noqa: PLC0415
    from layerforge.lock.uv import ResolveOptions  # noqa: PLC0415

    if check and (upgrade or upgrade_packages):
        flag = "--upgrade" if upgrade else "--upgrade-package"
        raise UsageError(
            f"--check cannot be combined with {flag}",
            hint="--check only compares the lock with the manifest; drop one of them",
        )
    ws = c.workspace(manifest, store, cache_dir)
    project = api.load_project(ws)
    _check_upgrade_packages(project, ws, upgrade_packages)
    if check:
        stale = api.check_lock(project, ws)
        if as_json:
            c.emit_json({"lock": str(ws.lock_path), "stale": stale})
        if stale:
            raise LockError(
                f"{ws.lock_path} is out of date for: {', '.join(stale)}",
                hint="run `layerforge lock` and commit layerforge.lock",
            )
        if not as_json:
            click.echo(f"{ws.lock_path.name} is up to date")
        return
    options = ResolveOptions(upgrade=upgrade, upgrade_packages=upgrade_packages)
    result = api.lock_project(project, ws, options, c.reporter(as_json))
    if as_json:
        c.emit_json(_lock_json(result.lock, ws.lock_path, result.changed))
        return
    _print_lock(c.console(), result.lock, project)
    rt.print_runtime(c.console(), rt.summaries(project, result.lock))
    verb = "wrote" if result.changed else "unchanged:"
    click.echo(f"{verb} {ws.lock_path}")


def _check_upgrade_packages(project: Any, ws: Any, names: tuple[str, ...]) -> None:
    """Every -P NAME is locked already, or asked for by some node of the manifest."""
    if not names:
        return
    import re  # noqa: PLC0415

    from packaging.utils import canonicalize_name  # noqa: PLC0415

    from layerforge.errors import UsageError  # noqa: PLC0415
    from layerforge.lock import lockfile  # noqa: PLC0415
    from layerforge.manifest import did_you_mean  # noqa: PLC0415

    lock = lockfile.read_optional(ws.lock_path)
    known = {n for node in project.nodes.values() for n in node.requirements.names()}
    known |= {p.name for node in (lock.nodes.values() if lock else ()) for p in node.packages}
    for raw in names:
        match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", raw.strip())
        name = canonicalize_name(match.group(0)) if match else raw
        if name not in known:
            raise UsageError(
                f"--upgrade-package: no locked distribution named {raw!r}"
                f"{did_you_mean(name, sorted(known))}",
                hint="name a distribution in layerforge.lock or in a node's requirements",
            )


@click.command()
@c.common
@click.argument("nodes", nargs=-1)
@click.option("--revision", default=None, help="Source revision recorded in the images.")
@c.remote_cache_option
def plan(
    manifest: Path | None,
    store: Path | None,
    cache_dir: Path | None,
    as_json: bool,
    nodes: tuple[str, ...],
    revision: str | None,
    remote_cache: bool,
) -> None:
    """Show each node's content key, whether the store has it, and why it must be built."""
    from layerforge import api  # noqa: PLC0415
    from layerforge.plan import PlanOptions  # noqa: PLC0415

    ws = c.workspace(manifest, store, cache_dir)
    project = api.load_project(ws)
    remote = c.registry_cache(project, remote_cache, c.reporter(as_json))
    result = api.plan_project(project, ws, list(nodes), PlanOptions(revision=revision), remote)
    groups = rt.lock_summaries(ws, project, [s.node for s in result.steps])
    if as_json:
        c.emit_json({"steps": [_step_json(s) for s in result.steps], **rt.runtime_doc(groups)})
        return
    _print_plan(c.console(), result)
    rt.print_runtime(c.console(), groups)


@click.command()
@c.common
@click.argument("nodes", nargs=-1)
@c.jobs_option
@click.option("--revision", default=None, help="Source revision recorded in the images.")
@click.option("--dry-run", is_flag=True, help="Show the plan; build nothing.")
@click.option("--allow-oversize", is_flag=True, help="Warn, not fail, when over max_size.")
@c.remote_cache_option
@click.option(
    "--push", "push_after", is_flag=True, help="Push the built images to project.registry."
)
@click.option("--no-verify", is_flag=True, help="Do not run the verify statements of each node.")
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
    runner: str | None,
) -> None:
    """Build NODES (default: all) and their ancestors into the local store."""
    from layerforge import api  # noqa: PLC0415
    from layerforge.plan import PlanOptions  # noqa: PLC0415

    ws = c.workspace(manifest, store, cache_dir)
    project = api.load_project(ws)
    options = PlanOptions(revision=revision)
    remote = c.registry_cache(project, remote_cache, c.reporter(as_json))
    if dry_run:
        result = api.plan_project(project, ws, list(nodes), options, remote)
        if as_json:
            c.emit_json({"steps": [_step_json(s) for s in result.steps]})
        else:
            _print_plan(c.console(), result)
        return
    from layerforge.commands_report import print_timings  # noqa: PLC0415
    from layerforge.report.timings import TimingReporter  # noqa: PLC0415

    with TimingReporter(c.reporter(as_json)) as rep:
        _plan, results = api.build_project(
            project, ws, list(nodes), options, rep, jobs, remote, allow_oversize=allow_oversize,
            verify=not no_verify, runner=runner,
        )  # fmt: skip
    pushed = _push_after(ws, project, list(results), as_json) if push_after else None
    images = [_result_json(r) for r in results.values()]
    if as_json:
        doc = {"store": str(ws.store), "images": images, "timings": rep.timings().to_json()}
        c.emit_json({**doc, **({"push": pushed} if pushed else {})})
        return
    _print_build(c.console(), results, ws.store)
    print_timings(c.console(), rep.timings())


def _push_after(ws: Any, project: Any, nodes: list[str], as_json: bool) -> dict[str, Any]:
    from layerforge import commands_registry as cr  # noqa: PLC0415

    pushed = cr.run_push(ws, project, nodes, as_json)
    if not as_json:
        cr.print_push(pushed, str(project.registry))
    return cr.push_json(pushed, str(project.registry))


@click.command()
def schema() -> None:
    """Print the JSON Schema of layerforge.toml."""
    from layerforge.manifest.schema import json_schema_text  # noqa: PLC0415

    click.echo(json_schema_text(), nl=False)


from layerforge.commands_export import export  # noqa: E402
from layerforge.commands_registry import archive  # noqa: E402

export.add_command(archive)

COMMANDS = [
    init,
    lock,
    plan,
    build,
    schema,
    *commands_report.COMMANDS,
    *REGISTRY_COMMANDS,
    export,
    verify_cmd,
    rt.runtime,
]


# -- rendering ----------------------------------------------------------------------------------


def _lock_json(lock: Any, path: Path, changed: bool) -> dict[str, Any]:
    return {
        "lock": str(path),
        "changed": changed,
        "nodes": {
            name: {
                "packages": [
                    {"name": p.name, "version": p.version, "size": p.size} for p in node.packages
                ],
                "source": dict(node.source),
                "runtime": {g.name: [p.pin for p in g.packages] for g in node.runtime},
            }
            for name, node in lock.nodes.items()
        },
    }


def _print_lock(console: Any, lock: Any, project: Any) -> None:
    from rich.table import Table  # noqa: PLC0415

    table = Table(title="layerforge.lock", title_justify="left")
    for col in ("node", "own packages", "wheel bytes", "largest"):
        table.add_column(col)
    for name in project.nodes:
        node = lock.nodes[name]
        largest = sorted(node.packages, key=lambda p: -p.size)[:3]
        table.add_row(
            name,
            str(len(node.packages)),
            format_size(sum(p.size for p in node.packages)),
            ", ".join(f"{p.name} {p.version}" for p in largest),
        )
    console.print(table)


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
        status = {"cached": "[green]cached[/]", "remote": "[cyan]in registry[/]"}.get(
            s.status, "[yellow]build[/]"
        )
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
        status = {"cached": "[green]cached[/]", "remote": "[cyan]from registry[/]"}.get(
            r.status, "[yellow]built[/]"
        )
        table.add_row(
            f"{r.node}:latest",
            str(doc["layers"]),
            format_size(doc["size"]),
            r.record.key.split(":", 1)[1][:12],
            status,
            f"{r.seconds:.2f}s",
        )
    console.print(table)
