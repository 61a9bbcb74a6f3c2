"""CLI verbs ``report``, ``gc``, ``sbom`` and ``audit``, and the timings table ``build``
prints at its end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from layerforge.cli import options as c
from layerforge.cli import runtime as rt
from layerforge.sizes import format_size, parse_size


@click.command()
@c.common
@click.argument("nodes", nargs=-1, shell_complete=c.complete_nodes)
@click.option("--check", is_flag=True, help="Exit 1 if any image is over its max_size.")
@click.option(
    "--html",
    "html_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Also write a self-contained HTML report (charts, no network) to this file "
    "(missing directories are created).",
)
def report(
    manifest: Path | None,
    store: Path | None,
    cache_dir: Path | None,
    as_json: bool,
    nodes: tuple[str, ...],
    check: bool,
    html_file: Path | None,
) -> None:
    """Sizes, layers, sharing, waste and budgets of the images in the store."""
    from layerforge import api  # noqa: PLC0415

    ws = c.workspace(manifest, store, cache_dir)
    project = api.load_project(ws)
    selected = [n for n in project.select(list(nodes)) if n in nodes] if nodes else None
    opened = api.open_store(ws.store)
    if html_file is not None:
        html_file = c.output_file(html_file, "--html", "report.html")
    outcome = api.report_project(project, ws, opened, selected)
    result, groups = outcome.fleet, outcome.runtime
    if html_file is not None:
        html_file.write_text(api.report_html(result), encoding="utf-8")
    if as_json:
        c.emit_json({**result.to_json(), **rt.runtime_doc(groups)})
    else:
        print_report(c.console(), result)
        rt.print_runtime(c.console(), groups)
        if html_file is not None:
            click.echo(f"wrote {html_file}")
    if check:
        api.check_budgets(result)


@click.command()
@c.common
@click.option(
    "--keep",
    default=3,
    show_default=True,
    type=click.IntRange(min=0),
    help="Content-key tags kept per node (newest first; latest's is always kept).",
)
@click.option("--dry-run", is_flag=True, help="Show what would be removed; remove nothing.")
@click.option(
    "--caches/--no-caches",
    default=True,
    show_default=True,
    help="Also clean the cache directory: unpacked images and layers no known store "
    "reaches, and work directories of crashed builds (see docs/reports.md).",
)
@click.option(
    "--all-caches",
    is_flag=True,
    help="Also remove the input-keyed caches (debootstrap, rootfs tarballs, system layers, "
    "apt/pip/uv downloads, wheels built from sdists). Frees the most; the next builds run "
    "debootstrap, system steps and sdist builds again.",
)
@click.option(
    "--wait",
    "wait",
    type=click.FloatRange(min=0),
    default=None,
    metavar="SECONDS",
    help="Wait at most SECONDS for the builds, pushes and verifies using the store to finish "
    "(default: as long as they take; 0: fail at once if the store is in use).",
)
@click.option(
    "--cache-max",
    "cache_max",
    default=None,
    metavar="SIZE",
    help="Cap on the layers and roots unpacked in the cache (e.g. 20GB): the least recently "
    "used go until they fit (default: LAYERFORGE_CACHE_MAX, else the manifest's cache_max, "
    "else half of the free space).",
)
def gc(
    manifest: Path | None,
    store: Path | None,
    cache_dir: Path | None,
    as_json: bool,
    keep: int,
    dry_run: bool,
    caches: bool,
    all_caches: bool,
    wait: float | None,
    cache_max: str | None,
) -> None:
    """Remove the blobs no tag reaches (keeping KEEP keys per node), then unneeded cache entries.

    Waits while a build, push or verify uses the store (they hold its lock)."""
    from layerforge import api  # noqa: PLC0415

    ws = c.workspace(manifest, store, cache_dir)
    outcome = api.collect_garbage(
        ws, keep, dry_run=dry_run, timeout=wait, caches=caches, all_caches=all_caches,
        reporter=c.reporter(as_json), cap=_size_option("--cache-max", cache_max),
    )  # fmt: skip
    result, cache = outcome.store, outcome.caches
    if as_json:
        doc = result.to_json()
        doc["caches"] = cache.to_json() if cache else None
        doc["freed_total"] = result.freed + (cache.freed if cache else 0)
        c.emit_json(doc)
        return
    verb = "would free" if dry_run else "freed"
    for ref in result.untagged:
        click.echo(f"{'would untag' if dry_run else 'untagged'} {ref}")
    click.echo(
        f"{verb} {format_size(result.freed)} ({len(result.removed)} blobs"
        + (f", {len(result.leftovers)} files of killed writes" if result.leftovers else "")
        + "); "
        f"{result.kept} blobs still reachable"
    )
    if cache is not None:
        _print_cache_gc(cache)


def _size_option(flag: str, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return parse_size(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=flag) from None


def _print_cache_gc(cache: Any) -> None:
    if cache.skipped:
        click.echo(f"cache {cache.cache_dir} not cleaned: {cache.skipped}")
        return
    verb = "would free" if cache.dry_run else "freed"
    areas = ", ".join(
        f"{area} {format_size(size)} ({count})" for area, (count, size) in cache.by_area().items()
    )
    click.echo(f"{verb} {format_size(cache.freed)} in the cache {cache.cache_dir}: {areas or '-'}")


# -- rendering ----------------------------------------------------------------------------------


def _table(title: str, *columns: str) -> Any:
    from rich.table import Table  # noqa: PLC0415

    table = Table(title=title, title_justify="left")
    for col in columns:
        table.add_column(col, justify="left" if col.startswith("<") else "right")
    for column in table.columns:
        column.header = str(column.header).lstrip("<")
    return table


def print_report(console: Any, r: Any) -> None:
    from layerforge.api import describe_layer  # noqa: PLC0415

    images = _table(
        "images", "<image", "compressed", "uncompressed", "inherited", "own", "waste", "<budget"
    )
    for i in r.images:
        status = "-"
        if i.max_size is not None:
            state = "[red]over[/]" if i.over_budget else "[green]ok[/]"
            status = f"{state} (max {format_size(i.max_size)})"
        images.add_row(
            i.node,
            format_size(i.size),
            format_size(i.uncompressed),
            format_size(i.inherited),
            format_size(i.own),
            format_size(i.waste.total),
            status,
        )
    console.print(images)
    layers = _table(
        "layers (each once, by the node that added it)",
        "<added by",
        "<kind",
        "compressed",
        "uncompressed",
        "<holds",
    )
    for i in r.images:
        for x in i.layers:
            if not x.inherited:
                layers.add_row(
                    x.owner,
                    x.kind,
                    format_size(x.size),
                    format_size(x.uncompressed),
                    describe_layer(x),
                )
    console.print(layers)
    _print_fleet(console, r)
    print_waste(console, r)
    for name in r.missing:
        console.print(f"[dim]· {name}: not in the store (run `layerforge build`)[/]")


def print_waste(console: Any, r: Any) -> None:
    """The largest hidden files, once per group of images that inherit the same waste (a
    base's deleted files would otherwise be listed again for each of its descendants)."""
    groups: dict[tuple[tuple[str, int, str, int], ...], list[str]] = {}
    for i in r.images:
        top = tuple((x.path, x.size, x.how, x.upper) for x in i.waste.items[:5])
        if top:
            groups.setdefault(top, []).append(i.node)
    images = {i.node: i for i in r.images}
    for top, nodes in groups.items():
        console.print(f"[yellow]waste[/] in {', '.join(nodes)} (largest files):")
        layers = images[nodes[0]].layers
        for path, size, how, upper in top:
            by = (
                f"{layers[upper].owner}'s {layers[upper].kind} layer"
                if upper < len(layers)
                else (f"layer {upper + 1}")
            )
            console.print(f"  {path} ({format_size(size)}, {how} by {by})")


def _print_fleet(console: Any, r: Any) -> None:
    fleet = _table(
        "fleet: naive (one image per service, nothing shared) vs layered",
        "<service",
        "naive",
        "layered",
    )
    for s in r.services:
        fleet.add_row(s, format_size(r.naive[s]), format_size(r.pulls[s]))
    fleet.add_row("[b]all services (pulled)[/]", format_size(r.naive_all), format_size(r.pull_all))
    fleet.add_row("[b]stored[/]", format_size(r.naive_all), format_size(r.stored))
    console.print(fleet)
    share = 100 * r.saving_pulled / r.naive_all if r.naive_all else 0.0
    console.print(
        f"sharing saves {format_size(r.saving_pulled)} ({share:.0f}%) of what a node "
        f"running every service pulls, {format_size(r.saving_stored)} stored"
    )
    if r.dists:
        dists = _table("largest distributions", "<distribution", "installed", "images")
        for d in r.dists[:10]:
            dists.add_row(f"{d.name} {d.version}", format_size(d.size), str(len(d.images)))
        console.print(dists)


def print_timings(console: Any, timings: Any) -> None:
    """Per node and per step seconds, what no step accounts for (``other``), and the
    totals; then the phases of the whole run."""
    steps = sorted(timings.by_step())
    table = _table("timings (seconds)", "<node", "total", *steps, "other")
    for node, seconds in timings.nodes.items():
        own = timings.node_steps(node)
        table.add_row(
            node,
            f"{seconds:.2f}",
            *(f"{own[s]:.2f}" if s in own else "-" for s in steps),
            f"{timings.other(node):.2f}" if seconds else "-",
        )
    totals = timings.by_step()
    other = sum(timings.other(node) for node in timings.nodes)
    table.add_row(
        "[b]total[/]", f"{timings.total:.2f}", *(f"{totals[s]:.2f}" for s in steps), f"{other:.2f}"
    )
    console.print(table)
    if timings.phases:
        parts = [f"{name} {seconds:.2f}" for name, seconds in timings.phases.items()]
        parts.append(f"other {timings.unphased():.2f}")
        console.print(f"wall {timings.total:.2f} s = " + " + ".join(parts))


@click.command()
@c.common
@click.argument("node")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write the document to this file (missing directories are created) instead of stdout.",
)
def sbom(
    manifest: Path | None,
    store: Path | None,
    cache_dir: Path | None,
    as_json: bool,
    node: str,
    output: Path | None,
) -> None:
    """The SBOM of NODE's image (CycloneDX 1.6 JSON): Debian packages, Python
    distributions and the interpreter, each with the layer that holds it."""
    from layerforge import api  # noqa: PLC0415

    ws = c.workspace(manifest, store, cache_dir)
    project = api.load_project(ws)
    if output is not None:
        output = c.output_file(output, "--output", "sbom.cdx.json")
    document = api.sbom_project(project, ws, node)
    if output is None:
        click.echo(document.decode(), nl=False)
        return
    output.write_bytes(document)
    if as_json:
        c.emit_json({"node": node, "output": str(output), "size": len(document)})
    else:
        click.echo(f"wrote {output}", err=True)


@click.command()
@c.common
@click.option("--offline", is_flag=True, help="Do not ask OSV's API (--db still works).")
@click.option(
    "--db",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="OSV's offline exports (DIR/PyPI/*.json, DIR/Debian/*.json) instead of its API.",
)
@click.option(
    "--osv-url",
    default="https://api.osv.dev",
    show_default=True,
    help="The OSV API to ask (any OSV-compatible server).",
)
@click.option(
    "--index-url",
    default=None,
    help="The index (PEP 691 JSON) outdated pins are checked against (default: the project's "
    "index_url, else PyPI; named indexes for the packages pinned to them).",
)
@click.option(
    "--html",
    "html_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Also write the HTML report of `layerforge report --html` with the audit as a "
    "section of it, to this file.",
)
@click.option(
    "--fail-on",
    type=click.Choice(["low", "medium", "high", "critical"]),
    default=None,
    help="Exit 1 when a vulnerability is at or above this severity (unknown counts as medium).",
)
def audit(
    manifest: Path | None,
    store: Path | None,
    cache_dir: Path | None,
    as_json: bool,
    offline: bool,
    db: Path | None,
    osv_url: str,
    index_url: str | None,
    html_file: Path | None,
    fail_on: str | None,
) -> None:
    """Vulnerabilities (OSV), unused requirements, licenses and outdated pins of the built
    images."""
    from layerforge import api  # noqa: PLC0415

    ws = c.workspace(manifest, store, cache_dir)
    project = api.load_project(ws)
    if html_file is not None:
        html_file = c.output_file(html_file, "--html", "report.html")
    result = api.audit_project(
        project, ws, offline=offline, db=db, osv_url=osv_url, index_url=index_url
    )
    if html_file is not None:
        fleet = api.report_project(project, ws, api.open_store(ws.store), None).fleet
        html_file.write_text(api.report_html(fleet, result), encoding="utf-8")
    if as_json:
        c.emit_json(result.to_json())
    else:
        print_audit(c.console(), result)
    api.check_audit(result, fail_on)


def _audit_table(console: Any, title: str, columns: tuple[str, ...], rows: list[list[str]]) -> None:
    from rich.table import Table  # noqa: PLC0415

    if not rows:
        console.print(f"{title}: none")
        return
    table = Table(title=title, title_justify="left")
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    console.print(table)


def _skipped(console: Any, title: str, section: dict[str, Any]) -> bool:
    if section["status"] != "skipped":
        return False
    console.print(f"{title}: skipped ({section['reason']})")
    return True


def print_audit(console: Any, result: Any) -> None:
    doc = result.to_json()
    vulns, old = doc["vulnerabilities"], doc["outdated"]
    if not _skipped(console, "vulnerabilities", vulns):
        rows = [[f["severity"], f["id"], f"{f['package']} ({f['ecosystem']})", f["version"],
                 ", ".join(f["fixed"]) or "-", ", ".join(f["nodes"])]
                for f in vulns["findings"]]  # fmt: skip
        columns = ("severity", "id", "package", "version", "fixed in", "images")
        _audit_table(console, "vulnerabilities", columns, rows)
    unused = [[r["node"], r["package"], r["version"]] for r in doc["unused"]["packages"]]
    _audit_table(console, "unused requirements (no service imports them)",
           ("node", "package", "version"), unused)  # fmt: skip
    groups = [[k, ", ".join(v)] for k, v in doc["licenses"]["groups"].items()]
    groups += [["(unknown)", ", ".join(doc["licenses"]["unknown"])]] * bool(
        doc["licenses"]["unknown"]
    )
    _audit_table(console, "licenses", ("license", "packages"), groups)
    if not _skipped(console, "outdated pins", old):
        rows = [[str(o["tier"]), o["node"], o["package"], o["version"], o["newest"],
                 o["uploaded"][:10]] for o in old["packages"]]  # fmt: skip
        columns = ("tier", "node", "package", "pinned", "newest", "released")
        _audit_table(console, "outdated pins", columns, rows)
    if doc["not_built"]:
        console.print("not built (not audited): " + ", ".join(doc["not_built"]))


COMMANDS = [report, gc, sbom, audit]
