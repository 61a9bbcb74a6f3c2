"""CLI verbs that talk to registries: ``push``, ``login``, ``export archive``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from layerforge.cli import options as c
from layerforge.sizes import format_size


def run_push(
    ws: Any, project: Any, nodes: list[str], as_json: bool, extra_tags: tuple[str, ...] = ()
) -> list[Any]:
    """Push NODES (default: all) with a progress display; returns PushResults."""
    from layerforge import api  # noqa: PLC0415

    rep = c.reporter(as_json)
    if hasattr(rep, "__enter__"):
        with rep:
            return api.push_project(project, ws, nodes, rep, extra_tags)
    return api.push_project(project, ws, nodes, rep, extra_tags)


def push_json(results: list[Any], registry: str) -> dict[str, Any]:
    return {
        "registry": registry,
        "images": [
            {
                "repository": r.repository,
                "digest": r.digest,
                "tags": list(r.tags),
                "uploaded_bytes": r.uploaded_bytes,
                "blobs": {o: r.count(o) for o in ("present", "mounted", "uploaded")},
                **(
                    {"sbom": {"digest": r.referrers[0].digest, "route": r.referrers[0].route}}
                    if r.referrers
                    else {}
                ),
            }
            for r in results
        ],
    }


def print_push(results: list[Any], registry: str) -> None:
    from rich.table import Table  # noqa: PLC0415

    table = Table(title=f"pushed to {registry}", title_justify="left")
    for col in ("repository", "digest", "tags", "uploaded", "blobs (new/mounted/present)"):
        table.add_column(col)
    for r in results:
        counts = "/".join(str(r.count(o)) for o in ("uploaded", "mounted", "present"))
        table.add_row(
            r.repository, r.digest[:19], ", ".join(r.tags), format_size(r.uploaded_bytes), counts
        )
    c.console().print(table)


@click.command()
@c.common
@click.argument("nodes", nargs=-1, shell_complete=c.complete_nodes)
@click.option("--tag", "-t", "tags", multiple=True, help="Extra tag to push (repeatable).")
def push(
    manifest: Path | None,
    store: Path | None,
    cache_dir: Path | None,
    as_json: bool,
    nodes: tuple[str, ...],
    tags: tuple[str, ...],
) -> None:
    """Push NODES (default: all, with their ancestors) to project.registry."""
    from layerforge import api  # noqa: PLC0415

    ws = c.workspace(manifest, store, cache_dir)
    project = api.load_project(ws)
    results = run_push(ws, project, list(nodes), as_json, tags)
    if as_json:
        c.emit_json(push_json(results, str(project.registry)))
    else:
        print_push(results, str(project.registry))


@click.command()
@click.argument("registry")
@click.option("--username", "-u", required=True, help="User name.")
@click.option("--password", "-p", default=None, help="Password or token (prefer --password-stdin).")
@click.option("--password-stdin", is_flag=True, help="Read the password or token from stdin.")
def login(registry: str, username: str, password: str | None, password_stdin: bool) -> None:
    """Check credentials for REGISTRY and store them in the Docker config.json."""
    from layerforge import api  # noqa: PLC0415
    from layerforge.errors import UsageError  # noqa: PLC0415

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    if not password:
        raise UsageError("no password given", hint="pass --password-stdin (or -p PASSWORD)")
    path = api.login_registry(registry, api.Credential(username, password))
    click.echo(f"login succeeded; credentials stored in {path}")


@click.command("archive")
@c.common
@click.argument("node", shell_complete=c.complete_nodes)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    required=True,
    help="Archive to write (missing directories are created); an existing directory gets "
    "NODE.tar (NODE-TAG.tar for a tag other than latest).",
)
@click.option("--tag", default="latest", show_default=True, help="Tag of NODE in the store.")
def archive(
    manifest: Path | None,
    store: Path | None,
    cache_dir: Path | None,
    as_json: bool,
    node: str,
    output: Path,
    tag: str,
) -> None:
    """Write NODE as a tar loadable by `docker load` and `podman load`."""
    from layerforge import api  # noqa: PLC0415

    ws = c.workspace(manifest, store, cache_dir)
    project = api.load_project(ws)
    project.select([node])
    local = api.open_store(ws.store)
    output = c.output_file(_archive_path(output, node, tag), "-o/--output", f"{node}.tar")
    name, result = api.archive_node(project, local, node, tag, output)
    doc = {"archive": str(result.path), "image": name, "digest": result.manifest.digest}
    if as_json:
        c.emit_json({**doc, "size": result.size})
    else:
        click.echo(f"wrote {result.path} ({format_size(result.size)}): {name} {doc['digest']}")


def _archive_path(output: Path, node: str, tag: str) -> Path:
    """``output``, or NODE[-TAG].tar inside it when it is an existing directory."""
    if not output.is_dir():
        return output
    return output / (f"{node}.tar" if tag == "latest" else f"{node}-{tag}.tar")


# `archive` joins the `export` group of layerforge.cli.export (see cli/commands.py).
REGISTRY_COMMANDS = [push, login]
