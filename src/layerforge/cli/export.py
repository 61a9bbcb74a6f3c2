"""``layerforge export ...``: files for teams that build with Docker/BuildKit or in CI.

``export`` is a click group; each exporter is a subcommand. Another module adds its own with
``export.add_command(cmd)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from layerforge.cli import options as c


@click.group()
def export() -> None:
    """Write Dockerfiles, a docker-bake file or a CI workflow for the fleet."""


def _run(kind: str, manifest: Path | None, as_json: bool, **paths: Any) -> None:
    from layerforge import api  # noqa: PLC0415

    store = paths.pop("store", None)
    cache_dir = paths.pop("cache_dir", None)
    rootfs = paths.pop("rootfs", False)
    ws = c.workspace(manifest, store, cache_dir)
    project = api.load_project(ws)
    root = project.root
    repo = api.find_repo_root(root)
    options = api.ExportOptions(
        dockerfiles=_abs(paths.get("dockerfiles"), root / "docker"),
        bake_file=_abs(paths.get("bake_file"), root / "docker-bake.hcl"),
        workflow=_abs(paths.get("workflow"), repo / ".github" / "workflows" / "layerforge.yml"),
        repo_root=repo,
        builder=paths.get("builder") or "layerforge",
        copy_link=paths.get("copy_link", True),
        install=paths.get("install"),
    )
    _check_outputs(kind, options, {k for k, v in paths.items() if v is not None})
    outcome = api.export_project(kind, project, ws, options, c.reporter(as_json), rootfs=rootfs)
    result = outcome.result
    if as_json:
        c.emit_json(
            {
                "export": kind,
                "written": [str(p) for p in result.written],
                "unchanged": [str(p) for p in result.unchanged],
                "removed": [str(p) for p in result.removed],
                "keys": outcome.keys,
            }
        )
        return
    for path in result.written:
        click.echo(f"wrote {path}")
    for path in result.removed:
        click.echo(f"removed {path} (written by an earlier export, no longer produced)")
    if result.unchanged:
        click.echo(f"{len(result.unchanged)} file(s) unchanged")


def _check_outputs(kind: str, options: Any, given: set[str]) -> None:
    """Exit 2 (not a traceback) when a file sits where a directory is needed, or the reverse."""
    if kind == "dockerfiles" or (kind == "bake" and "dockerfiles" in given):
        option = "-o/--output" if kind == "dockerfiles" else "--dockerfiles"
        option += "" if "dockerfiles" in given else " (default)"
        c.check_directory(options.dockerfiles, option, "name a directory (created if missing)")
    if kind in ("bake", "github"):
        path = options.bake_file if kind == "bake" else options.workflow
        field = "bake_file" if kind == "bake" else "workflow"
        option = "-o/--output" + ("" if field in given else " (default)")
        example = "docker-bake.hcl" if kind == "bake" else "layerforge.yml"
        c.output_file(path, option, example, create=False)


def _abs(value: Path | None, default: Path) -> Path:
    return value.resolve() if value is not None else default


@export.command("dockerfiles")
@c.common
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="Directory for the Dockerfiles, inside the project (default: <project>/docker).",
)
@click.option(
    "--rootfs/--no-rootfs",
    default=True,
    show_default=True,
    help="Write rootfs.tar.gz for root bases whose OS source Docker cannot pull "
    "(debootstrap, rootfs:), from the local store.",
)
@click.option(
    "--copy-link/--no-copy-link",
    default=True,
    show_default=True,
    help="Copy service sources with COPY --link (BuildKit). Builders that reject the flag "
    "(buildah before 1.33, Docker's legacy builder) need --no-copy-link.",
)
def dockerfiles(
    manifest: Path | None,
    store: Path | None,
    cache_dir: Path | None,
    as_json: bool,
    output: Path | None,
    rootfs: bool,
    copy_link: bool,
) -> None:
    """One Dockerfile per node, chained by content-key tags, installs from the lock."""
    _run(
        "dockerfiles",
        manifest,
        as_json,
        store=store,
        cache_dir=cache_dir,
        rootfs=rootfs,
        dockerfiles=output,
        copy_link=copy_link,
    )


@export.command("bake")
@c.common
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="The bake file (default: <project>/docker-bake.hcl).",
)
@click.option(
    "--dockerfiles",
    "dockerfiles_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Where `export dockerfiles` wrote them (default: <project>/docker).",
)
def bake(
    manifest: Path | None,
    store: Path | None,
    cache_dir: Path | None,
    as_json: bool,
    output: Path | None,
    dockerfiles_dir: Path | None,
) -> None:
    """A docker-bake.hcl: one target per node, children linked to parents by contexts."""
    del store, cache_dir
    _run("bake", manifest, as_json, bake_file=output, dockerfiles=dockerfiles_dir)


@export.command("github")
@c.common
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="The workflow file (default: <repository>/.github/workflows/layerforge.yml).",
)
@click.option(
    "--builder",
    type=click.Choice(["layerforge", "bake"]),
    default="layerforge",
    show_default=True,
    help="Build with layerforge itself, or with docker buildx bake.",
)
@click.option(
    "--install",
    default=None,
    metavar="SPEC",
    help="What the workflow installs with pip (default: layerforge==<this version>), e.g. "
    "a git URL or a version on your index.",
)
def github(
    manifest: Path | None,
    store: Path | None,
    cache_dir: Path | None,
    as_json: bool,
    output: Path | None,
    builder: str,
    install: str | None,
) -> None:
    """A GitHub Actions workflow: bases in dependency order, services as a matrix."""
    del store, cache_dir
    _run("github", manifest, as_json, workflow=output, builder=builder, install=install)
    if install is None:
        from layerforge import __version__  # noqa: PLC0415

        click.echo(
            f"note: the workflow installs layerforge=={__version__} with pip; if your index "
            "does not have it, export again with --install SPEC (a version it has, or a git "
            "URL)",
            err=True,
        )
