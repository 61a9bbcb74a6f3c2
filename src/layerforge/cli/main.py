"""The command line: parse arguments, render events, map errors to exit codes.

Exit codes: 0 ok, 1 build/verify failure, 2 usage or manifest error, 3 registry/network error.
This is the only module that prints or exits.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import click

from layerforge import __version__, proc
from layerforge.cli.commands import COMMANDS
from layerforge.cli.options import STARTED, add_verbosity, console
from layerforge.errors import LayerforgeError, UsageError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="layerforge")
def cli() -> None:
    """Reproducible, layered OCI images for fleets of Python services, without a daemon."""


for _command in COMMANDS:
    cli.add_command(_command)
add_verbosity(cli)


def _process_start() -> float:
    """When this process started, on the time.perf_counter clock (the interpreter's own start
    and imports are part of a command's wall time); now, where /proc cannot tell."""
    now = time.perf_counter()
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return now
    age = uptime - ticks / os.sysconf("SC_CLK_TCK")
    return now - age if 0 <= age < 60 else now


def main(argv: Sequence[str] | None = None) -> int:
    args = list(argv) if argv is not None else sys.argv[1:]
    proc.reset_stop()  # a new command: an earlier interrupt in this process (a caller's) is over
    try:
        # when the command started: the timings count from there (see cli.options.started)
        began = {STARTED: _process_start() if argv is None else time.perf_counter()}
        code = cli.main(args=args, prog_name="layerforge", standalone_mode=False, obj=began)
    except (LayerforgeError, OSError) as exc:
        return _report_error(_as_error(exc), _wants_json(args))
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        return _click_error(exc, _wants_json(args))
    except (click.exceptions.Abort, KeyboardInterrupt) as exc:
        proc.request_stop()  # workers and the programs they run stop too
        # click turns Ctrl-C into Abort; an Abort of its own (EOF at a prompt) says so
        aborted = not isinstance(exc, KeyboardInterrupt) and not isinstance(
            exc.__cause__, KeyboardInterrupt
        )
        click.echo("aborted" if aborted else "interrupted", err=True)
        return 130
    # without standalone mode click returns the code of a click.exceptions.Exit (`run`
    # ends with its program's); commands return None
    return code if isinstance(code, int) else 0


def _as_error(exc: LayerforgeError | OSError) -> LayerforgeError:
    """An OSError that the checks missed still becomes a message, not a traceback."""
    if isinstance(exc, LayerforgeError):
        return exc
    where = f"{exc.filename}: " if exc.filename else ""
    return LayerforgeError(
        f"{where}{exc.strerror or exc}",
        hint="check that path: a file where a directory is needed (or the reverse), "
        "permissions, or free space",
    )


def _click_error(exc: click.ClickException, as_json: bool) -> int:
    code = 2 if isinstance(exc, click.UsageError) else exc.exit_code
    if as_json:
        kind = "UsageError" if isinstance(exc, click.UsageError) else "Error"
        _json_error(kind, exc.format_message(), code)
    else:
        exc.show()
    return code


def _wants_json(args: list[str]) -> bool:
    """``--json`` among the options (before a ``--``): errors are then JSON too."""
    options = args[: args.index("--")] if "--" in args else args
    return "--json" in options


def _report_error(exc: LayerforgeError, as_json: bool) -> int:
    if as_json:
        extra = {k: v for k in ("file", "key") if (v := getattr(exc, k, None))}
        _json_error(type(exc).__name__, exc.message, exc.exit_code, exc.hint, **extra)
        return exc.exit_code
    from rich.text import Text  # noqa: PLC0415

    message = Text("error: ", style="bold red") + Text(str(exc))
    console(stderr=True).print(message, soft_wrap=True)
    return exc.exit_code


def _json_error(kind: str, message: str, code: int, hint: str | None = None, **extra: str) -> None:
    """One JSON line on stderr, like the events: ``{"event": "error", ...}``."""
    doc = {"event": "error", "error": kind, "message": message, "exit_code": code, **extra}
    if hint:
        doc["hint"] = hint
    click.echo(json.dumps(doc, sort_keys=True), err=True)


def fail_usage(message: str, hint: str | None = None) -> None:
    raise UsageError(message, hint=hint)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
