"""``layerforge init`` and ``layerforge schema``: the manifest itself."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("directory", type=click.Path(path_type=Path), required=False)
@click.option("--name", default=None, help="Project name (default: the directory name).")
@click.option(
    "--from",
    "source",
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    default=None,
    help="Migrate the repository at PATH: its Dockerfiles, compose files and requirements "
    "files become layerforge.toml, with a report of every instruction "
    "(layerforge-migration.md).",
    metavar="PATH",
)
@click.option(
    "--os",
    "os_mode",
    type=click.Choice(["registry", "debootstrap"]),
    default="registry",
    help="With --from: keep FROM python:/debian: images as registry sources, or map them to "
    "{ debootstrap = SUITE } where the suite's Python matches.",
)
@click.option(
    "--tag",
    "tags",
    multiple=True,
    metavar="REF=DIR",
    help="With --from: the image REF is built by the Dockerfile in DIR (repeatable); "
    "overrides compose image: keys and the directory-name guess.",
)
@click.option("--no-lock", is_flag=True, help="With --from: do not check that the result locks.")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None, hidden=True)
@click.option("--json", "as_json", is_flag=True, help="With --from: print the rows as JSON.")
def init(
    directory: Path | None,
    name: str | None,
    source: Path | None,
    os_mode: str,
    tags: tuple[str, ...],
    no_lock: bool,
    cache_dir: Path | None,
    as_json: bool,
) -> None:
    """Write a starter layerforge.toml in DIRECTORY, or migrate a repository (--from)."""
    from layerforge import api  # noqa: PLC0415
    from layerforge.cli import options as c  # noqa: PLC0415
    from layerforge.errors import LayerforgeError, UsageError  # noqa: PLC0415

    if source is None:
        path = api.init_project((directory or Path(".")).resolve(), name)
        click.echo(f"wrote {path}; next: `layerforge lock`, then `layerforge build`")
        return
    if directory is not None and directory.resolve() != source.resolve():
        raise UsageError(
            "with --from, layerforge.toml is written in the migrated repository itself",
            hint="drop DIRECTORY: the manifest names your own requirements files and "
            "directories, relative to the repository",
        )
    given: dict[str, Path] = {}
    for item in tags:
        ref, sep, where = item.partition("=")
        if not sep or not ref or not where:
            raise UsageError(f"--tag {item!r} is not REF=DIR", hint="e.g. --tag acme/base=base/")
        given[ref] = (source / where).resolve()
    result = api.init_from(
        source.resolve(),
        name,
        os_mode=os_mode,
        tags=given,
        lock=not no_lock,
        cache_dir=(cache_dir or c.default_cache()).resolve(),
        reporter=c.reporter(False),
    )
    if as_json:
        c.emit_json(result.to_json())
    else:
        counts = ", ".join(f"{v} {k}" for k, v in sorted(result.counts.items()))
        click.echo(f"wrote {result.manifest} and {result.report} ({counts})")
        for problem in result.problems:
            click.echo(f"  to fix: {problem}", err=True)
        if result.exit_code == 0:
            click.echo("next: `layerforge build`, then `layerforge verify`")
    if result.exit_code:
        what = [f"{len(result.problems)} thing(s) to fix"] if result.problems else []
        what += [f"`layerforge lock` failed: {result.lock_error}"] if result.lock_error else []
        raise LayerforgeError(
            f"the migration is incomplete: {'; '.join(what)}",
            hint=f"the files are written: fix what {result.report.name} lists under 'To fix', "
            "then run `layerforge lock`",
        )


@click.command()
def schema() -> None:
    """Print the JSON Schema of layerforge.toml."""
    from layerforge import api  # noqa: PLC0415

    click.echo(api.schema_text(), nl=False)
