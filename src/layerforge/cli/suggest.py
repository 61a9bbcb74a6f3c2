"""``layerforge suggest``: score alternative base hierarchies of the built fleet."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from layerforge.cli import options as c
from layerforge.sizes import format_size


@click.command()
@c.common
@click.option(
    "--pool",
    "pools",
    multiple=True,
    metavar="NAME=SVC,SVC",
    help="A node pool and the services placed on it (repeatable); every other service gets "
    "a node of its own.",
)
@click.option(
    "--write",
    is_flag=True,
    help="Apply the recommendation (or --candidate) to layerforge.toml, then lock again.",
)
@click.option("--candidate", default=None, help="With --write: the candidate to apply, by name.")
@click.option(
    "--offline",
    is_flag=True,
    help="Do not read release dates from the project's default index (no rebuild measure).",
)
@click.option(
    "--horizon",
    type=click.IntRange(0, 120),
    default=6,
    show_default=True,
    help="Months of rebuild pulls weighed into each candidate's total.",
)
def suggest(
    manifest: Path | None,
    store: Path | None,
    cache_dir: Path | None,
    as_json: bool,
    pools: tuple[str, ...],
    write: bool,
    candidate: str | None,
    offline: bool,
    horizon: int,
) -> None:
    """Score alternative base hierarchies (bytes stored, bytes each pool pulls) and
    recommend one. Predictions come from the built layers: build first."""
    from layerforge import api  # noqa: PLC0415
    from layerforge.errors import UsageError  # noqa: PLC0415

    placement: dict[str, list[str]] = {}
    for item in pools:
        name, sep, members = item.partition("=")
        if not sep or not name or not members:
            raise UsageError(f"--pool {item!r} is not NAME=SVC,SVC", hint="e.g. --pool cpu=api,web")
        placement[name] = [m.strip() for m in members.split(",") if m.strip()]
    ws = c.workspace(manifest, store, cache_dir)
    project = api.load_project(ws)
    result = api.suggest_project(
        project, ws, api.open_store(ws.store), placement, releases=not offline, horizon=horizon
    )
    if as_json:
        c.emit_json(result.to_json())
    else:
        _print(c.console(), result)
    if not write:
        return
    diff = api.write_suggestion(ws, result, candidate)
    api.lock_project(api.load_project(ws), ws, None, c.reporter(as_json))
    click.echo(diff or "(no change)", err=as_json)
    click.echo(
        f"wrote {ws.manifest} and {ws.lock_path.name}; next: `layerforge build`", err=as_json
    )


def _print(console: Any, result: Any) -> None:
    from rich.table import Table  # noqa: PLC0415

    table = Table(title="candidate hierarchies (sizes compressed)")
    pools = list(result.pools)
    columns = ["", "candidate", "stored", *(f"pull {p}" for p in pools), "rebuild/month"]
    columns += ["images", "unused"]
    for column in columns:
        table.add_column(column)
    for cand in result.candidates:
        if cand.error is not None:
            table.add_row("", cand.name, "does not resolve", *["" for _ in pools], "", "", "")
            continue
        mark = "*" if cand.name in result.front else ""
        est = " (est.)" if cand.score.estimated else ""
        table.add_row(
            mark,
            cand.name,
            format_size(cand.score.stored) + est,
            *(format_size(cand.score.pulled.get(p, 0)) for p in pools),
            format_size(cand.score.rebuild) if result.rates_known else "-",
            str(cand.score.images),
            format_size(cand.unused),
        )
    console.print(table)
    console.print("* the Pareto front (no other candidate is better in every measure)")
    console.print(
        "unused: bytes in service images their services are not seen to import (advisory, "
        "an upper bound: dynamic imports are invisible)"
    )
    if not result.rates_known:
        console.print(
            "rebuild/month: no release dates (--offline, or no default index in the manifest "
            "that answers PEP 691 JSON)"
        )
    chosen = result.candidate(result.chosen)
    console.print(f"recommended: {chosen.name}")
    for edit in chosen.edits:
        console.print(f"  {edit.node}.{edit.key}: {edit.old!r} -> {edit.new!r}")
