"""``layerforge verify``: run each node's verify statements inside its built image."""

from __future__ import annotations

from pathlib import Path

import click

from layerforge.cli import options as c


@click.command()
@c.common
@click.argument("nodes", nargs=-1, shell_complete=c.complete_nodes)
@c.runner_option
def verify(
    manifest: Path | None,
    store: Path | None,
    cache_dir: Path | None,
    as_json: bool,
    nodes: tuple[str, ...],
    runner: str | None,
) -> None:
    """Run the verify statements of NODES (default: all) inside their images."""
    from layerforge import api  # noqa: PLC0415

    ws = c.workspace(manifest, store, cache_dir)
    project = api.load_project(ws)
    results = api.verify_project(project, ws, list(nodes), c.reporter(as_json), runner)
    if as_json:
        c.emit_json(
            {
                "checks": [
                    {"node": r.node, "check": r.label, "ok": r.ok, "seconds": round(r.seconds, 3)}
                    for r in results
                ]
            }
        )
        return
    console = c.console()
    for r in results:
        console.print(f"[green]✓[/] {r.node}: {r.label} [dim]({r.seconds:.2f}s)[/]")
    click.echo(f"{len(results)} checks passed")
