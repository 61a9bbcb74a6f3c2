"""Shared plumbing for the CLI verbs: common options, workspace, reporters, consoles."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def default_cache() -> Path:
    return _default_cache()


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
            envvar="LAYERFORGE_STORE",
            help="Local OCI store (default: .layerforge next to the manifest).",
        ),
        click.option(
            "--cache-dir",
            type=click.Path(path_type=Path),
            default=None,
            envvar="LAYERFORGE_CACHE_DIR",
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
    func = _names_a_full_disk(func)
    for option in reversed(options):
        func = option(func)
    return func


def _names_a_full_disk(func: F) -> F:
    """A disk that fills up while the command runs becomes a DiskFullError naming the store
    and the cache directory of the command's options and their free space."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            from layerforge.diskfull import disk_full_error, full_disk_cause  # noqa: PLC0415

            cause = full_disk_cause(exc)
            if cause is None:
                raise
            areas = _areas(kwargs.get("manifest"), kwargs.get("store"), kwargs.get("cache_dir"))
            raise disk_full_error(cause, areas) from exc

    return wrapper  # type: ignore[return-value]


def _areas(manifest: Path | None, store: Path | None, cache_dir: Path | None) -> list[Any]:
    """(name, directory) of the store and the cache the options name (what can be found)."""
    try:
        ws = workspace(manifest, store, cache_dir)
    except Exception:  # the disk-full report must not fail in its turn
        return [("cache", (cache_dir or _default_cache()).absolute())]
    return [("store", ws.store), ("cache", ws.cache_dir)]


def workspace(manifest: Path | None, store: Path | None, cache_dir: Path | None) -> Any:
    """The Workspace of the options; a store or cache path that cannot be a directory (it, or
    a directory above it, is a file) is a UsageError before anything runs."""
    from layerforge.api import Workspace, find_manifest  # noqa: PLC0415

    path = find_manifest(Path(manifest) if manifest else Path.cwd()).resolve()
    ws = Workspace(
        manifest=path,
        store=(store or path.parent / ".layerforge").resolve(),
        cache_dir=(cache_dir or _default_cache()).resolve(),
    )
    for path, option, given in (
        (ws.store, "--store", store),
        (ws.cache_dir, "--cache-dir", cache_dir),
    ):
        check_directory(
            path,
            option if given else f"{option} (default)",
            f"pass {option} DIR naming a directory (it is created if missing)",
        )
    return ws


def _file_at_or_above(path: Path) -> Path | None:
    """The first existing ancestor-or-self of ``path`` when it is not a directory."""
    for at in (path, *path.parents):
        if at.exists():
            return None if at.is_dir() else at
    return None


def check_directory(path: Path, what: str, hint: str) -> None:
    """``path`` is a directory, or can be made one: no file sits at it or above it."""
    from layerforge.errors import UsageError  # noqa: PLC0415

    blocker = _file_at_or_above(path)
    if blocker == path:
        raise UsageError(f"{what} {path} is a file, not a directory", hint=hint)
    if blocker is not None:
        raise UsageError(f"{what} {path} cannot be a directory: {blocker} is a file", hint=hint)


def output_file(path: Path, option: str, example: str, *, create: bool = True) -> Path:
    """``path`` resolved, its missing parent directories created (with ``create``); exit 2 if
    it is a directory or cannot be made."""
    from layerforge.errors import UsageError  # noqa: PLC0415

    path = path.resolve()
    if path.is_dir():
        raise UsageError(
            f"{option} {path} is a directory, not a file",
            hint=f"name a file, e.g. {option} {path / example}",
        )
    blocker = _file_at_or_above(path.parent)
    if blocker is not None:
        raise UsageError(
            f"{option} {path}: {blocker} is a file, not a directory",
            hint=f"name a file in a directory, e.g. {option} {example}",
        )
    if not create:
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(
            f"{option} {path}: cannot create {path.parent}: {exc.strerror}",
            hint="name a file in a directory you can write",
        ) from None
    return path


STARTED = "started"  # the root context's obj: when main() began (time.perf_counter)


def started() -> float | None:
    """When this command began (main() entry), if main() ran it."""
    obj = click.get_current_context().find_root().obj
    value = obj.get(STARTED) if isinstance(obj, dict) else None
    return float(value) if isinstance(value, int | float) else None


def reporter(as_json: bool) -> Any:
    from layerforge.cli.render import JsonLinesReporter, RichReporter  # noqa: PLC0415

    level = verbosity()
    if as_json:
        return JsonLinesReporter(level=level)
    return RichReporter(console(stderr=True), level=level)


# -- -q/--quiet and -v/--verbose, on every command (main adds them) --------------------------

_VERBOSITY = "layerforge.verbosity"


def verbosity() -> int:
    """-1 with -q (warnings only), 0 by default, 1+ with -v (every event)."""
    ctx = click.get_current_context(silent=True)
    return int(ctx.meta.get(_VERBOSITY, 0)) if ctx is not None else 0


def _set_verbosity(delta: int) -> Callable[[click.Context, click.Parameter, Any], None]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        del param
        if value:
            step = delta * (value if isinstance(value, int) and value is not True else 1)
            ctx.meta[_VERBOSITY] = int(ctx.meta.get(_VERBOSITY, 0)) + step

    return callback


def add_verbosity(command: click.Command) -> None:
    """Give ``command`` and every command under it ``-q/--quiet`` and ``-v/--verbose``."""
    names = {opt for p in command.params for opt in p.opts}
    if "-q" not in names:
        command.params += [
            click.Option(
                ["-q", "--quiet"],
                is_flag=True,
                expose_value=False,
                callback=_set_verbosity(-1),
                help="Only warnings, errors and the result.",
            ),
            click.Option(
                ["-v", "--verbose"],
                count=True,
                expose_value=False,
                callback=_set_verbosity(1),
                help="Every step as it starts and ends (repeatable).",
            ),
        ]
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            add_verbosity(sub)


# -- shell completion --------------------------------------------------------------------------


def complete_nodes(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Node names of the manifest (``-f`` or ./layerforge.toml), read with tomllib alone so
    that completing stays fast; the names already on the line are left out."""
    del param
    import tomllib  # noqa: PLC0415

    given = ctx.params.get("manifest")
    path = Path(given) if given else Path.cwd()
    path = path / "layerforge.toml" if path.is_dir() else path
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, ValueError):
        return []
    names = [str(n) for table in ("bases", "services") for n in (doc.get(table) or {})]
    used = set(ctx.params.get("nodes") or ()) | {ctx.params.get("node")}
    return [n for n in names if n.startswith(incomplete) and n not in used]


PIPE_WIDTH = 120  # columns of tables written to a pipe or file (CI logs): rich's 80 cut headers


def console(*, stderr: bool = False) -> Any:
    from rich.console import Console  # noqa: PLC0415

    stream = sys.stderr if stderr else sys.stdout
    piped = not stream.isatty() and "COLUMNS" not in os.environ
    return Console(stderr=stderr, highlight=False, width=PIPE_WIDTH if piped else None)


def emit_json(doc: object) -> None:
    click.echo(json.dumps(doc, indent=2, sort_keys=True))


# The names of layerforge.sandbox.runner.RUNNERS (test_cli_robust checks that they are equal),
# spelled here so that `--help` loads no sandbox code.
RUNNER_NAMES = ("bwrap", "chroot", "podman")

runner_option = click.option(
    "--runner",
    type=click.Choice(RUNNER_NAMES),
    default=None,
    help="Sandbox runner (default: bwrap; chroot is unconfined: trusted images only).",
)

jobs_option = click.option(
    "--jobs",
    "-j",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Nodes built in parallel.",
)

_remote_cache = click.option(
    "--remote-cache/--no-remote-cache",
    default=True,
    show_default=True,
    help="Reuse nodes that project.registry already holds (NODE:lf-<key12>).",
)
OFFLINE = "offline"  # click context meta key set by --offline


def _note_offline(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.meta[OFFLINE] = True


_offline = click.option(
    "--offline",
    is_flag=True,
    expose_value=False,
    callback=_note_offline,
    help="Never ask project.registry (as --no-remote-cache); also LAYERFORGE_OFFLINE=1.",
)


def remote_cache_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """--remote-cache/--no-remote-cache and --offline."""
    return _remote_cache(_offline(f))


def registry_cache(project: Any, enabled: bool, reporter: Any, cache_dir: Any = None) -> Any:
    """A RegistryCache for the project's registry, or None (no registry, disabled, or
    offline); ``cache_dir`` remembers a registry found unreachable."""
    if not enabled or click.get_current_context().meta.get(OFFLINE):
        return None
    from layerforge import api  # noqa: PLC0415

    return api.registry_cache(project, reporter, cache_dir)
