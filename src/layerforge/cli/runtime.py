"""Runtime groups in the CLI: the table ``plan``, ``report`` and ``lock`` print, their JSON,
and the ``runtime`` verb (every group each image can install, not baked)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from layerforge.cli import options as c
from layerforge.sizes import format_size


def lock_summaries(ws: Any, project: Any, names: list[str]) -> list[Any]:
    """The runtime groups of ``names`` as the lock file says (stale or not)."""
    from layerforge import api  # noqa: PLC0415

    return api.runtime_summaries(project, api.read_optional_lock(ws), names)


def runtime_json(rows: list[Any]) -> list[dict[str, object]]:
    return [r.to_json() for r in rows]


def runtime_doc(rows: list[Any]) -> dict[str, object]:
    """``{"runtime": [...]}`` for --json documents; nothing when there are no groups."""
    return {"runtime": runtime_json(rows)} if rows else {}


def print_runtime(console: Any, rows: list[Any]) -> None:
    """One row per node and group: what `layerforge-runtime ensure GROUP` would install."""
    if not rows:
        return
    from rich.table import Table  # noqa: PLC0415

    table = Table(title="runtime groups (installed on first use)", title_justify="left")
    for col, justify in (
        ("image", "left"),
        ("group", "left"),
        ("declared by", "left"),
        ("distributions", "right"),
        ("not baked", "right"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        table.add_row(r.node, r.group, r.declared_by, str(r.distributions), format_size(r.size))
    console.print(table)


@click.command()
@c.common
@click.argument("nodes", nargs=-1, shell_complete=c.complete_nodes)
def runtime(
    manifest: Path | None,
    store: Path | None,
    cache_dir: Path | None,
    as_json: bool,
    nodes: tuple[str, ...],
) -> None:
    """Runtime groups each image can install on first use (locked, not baked)."""
    from layerforge import api  # noqa: PLC0415

    ws = c.workspace(manifest, store, cache_dir)
    project = api.load_project(ws)
    lock = api.read_lock(project, ws)
    names = [n for n in project.select(list(nodes)) if n in nodes] if nodes else None
    rows = api.runtime_summaries(project, lock, names)
    if as_json:
        c.emit_json({"runtime": runtime_json(rows)})
        return
    if not rows:
        click.echo("no runtime groups (declare them with runtime = { GROUP = [...] })")
        return
    print_runtime(c.console(), rows)
