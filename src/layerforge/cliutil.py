"""Shared plumbing for the CLI verbs: common options, workspace, reporters, consoles."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def _default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "layerforge"


def common(func: F) -> F:
    options = [
        click.option(
            "-f",
            "--manifest",
            type=click.Path(path_type=Path),
            default=None,
            help="Path to layerforge.toml (default: ./layerforge.toml).",
        ),
        click.option(
            "--store",
            type=click.Path(path_type=Path),
            default=None,
            help="Local OCI store (default: .layerforge next to the manifest).",
        ),
        click.option(
            "--cache-dir",
            type=click.Path(path_type=Path),
            default=None,
            help="Cache for OS sources and staging (default: ~/.cache/layerforge).",
        ),
        click.option(
            "--json",
            "as_json",
            is_flag=True,
            help="Machine-readable output: a JSON document on stdout, events as JSON "
            "lines on stderr.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def workspace(manifest: Path | None, store: Path | None, cache_dir: Path | None) -> Any:
    from layerforge.api import Workspace  # noqa: PLC0415
    from layerforge.manifest import find_manifest  # noqa: PLC0415

    path = find_manifest(Path(manifest) if manifest else Path.cwd()).resolve()
    return Workspace(
        manifest=path,
        store=(store or path.parent / ".layerforge").resolve(),
        cache_dir=(cache_dir or _default_cache()).resolve(),
    )


def reporter(as_json: bool) -> Any:
    from layerforge.render import JsonLinesReporter, RichReporter  # noqa: PLC0415

    if as_json:
        return JsonLinesReporter()
    return RichReporter(console(stderr=True))


def console(*, stderr: bool = False) -> Any:
    from rich.console import Console  # noqa: PLC0415

    return Console(stderr=stderr, highlight=False)


def emit_json(doc: object) -> None:
    click.echo(json.dumps(doc, indent=2, sort_keys=True))


remote_cache_option = click.option(
    "--remote-cache/--no-remote-cache",
    default=True,
    show_default=True,
    help="Reuse nodes that project.registry already holds (NODE:lf-<key12>).",
)


def registry_cache(project: Any, enabled: bool, reporter: Any) -> Any:
    """A RegistryCache for the project's registry, or None (no registry, or disabled)."""
    if not enabled or not project.registry:
        return None
    from layerforge.oci.remote import RegistryCache, default_config  # noqa: PLC0415

    return RegistryCache(project, default_config(), reporter)
