"""Every command of the ``layerforge`` group, in one list (``main`` adds them)."""

from __future__ import annotations

from layerforge.cli.build import build, plan, rebase
from layerforge.cli.export import export
from layerforge.cli.local import LOCAL_COMMANDS
from layerforge.cli.lock import lock
from layerforge.cli.project import init, schema
from layerforge.cli.registry import REGISTRY_COMMANDS, archive
from layerforge.cli.report import COMMANDS as REPORT_COMMANDS
from layerforge.cli.runtime import runtime
from layerforge.cli.suggest import suggest
from layerforge.cli.verify import verify

export.add_command(archive)

COMMANDS = [
    init,
    lock,
    plan,
    build,
    rebase,
    schema,
    *REPORT_COMMANDS,
    suggest,
    *REGISTRY_COMMANDS,
    export,
    verify,
    runtime,
    *LOCAL_COMMANDS,
]
