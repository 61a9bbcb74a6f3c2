"""``layerforge init`` and ``layerforge schema``: the manifest itself."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("directory", type=click.Path(path_type=Path), default=".")
@click.option("--name", default=None, help="Project name (default: the directory name).")
def init(directory: Path, name: str | None) -> None:
    """Write a starter layerforge.toml in DIRECTORY."""
    from layerforge import api  # noqa: PLC0415

    path = api.init_project(directory.resolve(), name)
    click.echo(f"wrote {path}; next: `layerforge lock`, then `layerforge build`")


@click.command()
def schema() -> None:
    """Print the JSON Schema of layerforge.toml."""
    from layerforge import api  # noqa: PLC0415

    click.echo(api.schema_text(), nl=False)
