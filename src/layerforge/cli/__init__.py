"""The command line: click commands that call :mod:`layerforge.api` and render its results.

Modules here import only ``layerforge.api`` (inside the command functions, so that
``--help`` stays fast), each other and the leaves ``errors``, ``events``, ``sizes``, ``proc``
and ``diskfull`` (tests/unit/test_cli_imports.py checks it).
"""

from layerforge.cli.main import cli, main

__all__ = ["cli", "main"]
