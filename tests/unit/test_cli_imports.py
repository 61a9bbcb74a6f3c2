"""The CLI is thin: it reaches the rest of layerforge only through ``layerforge.api``, and
``--help`` loads none of it (every command imports ``api`` inside its function)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

CLI = Path(__file__).resolve().parents[2] / "src" / "layerforge" / "cli"

# what modules under layerforge.cli may import of ours (each with its submodules)
ALLOWED = (
    "layerforge.api",
    "layerforge.cli",
    "layerforge.errors",
    "layerforge.events",
    "layerforge.sizes",
    "layerforge.proc",
    "layerforge.diskfull",
)
# loaded by none of the `--help`s: the work behind the verbs
HEAVY = (
    "layerforge.api",
    "layerforge.builder",
    "layerforge.oci",
    "layerforge.sandbox",
    "layerforge.report",
    "layerforge.export",
)


def _within(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


@pytest.mark.parametrize("args", [["--help"], ["build", "--help"], ["export", "--help"]])
def test_help_loads_no_layerforge_machinery(args: list[str]) -> None:
    script = (
        "import contextlib, io, json, sys\n"
        "from layerforge.cli import cli\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    cli.main(args={args!r}, prog_name='layerforge', standalone_mode=False)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('layerforge'))))\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    loaded = json.loads(run.stdout)
    assert "layerforge.cli.main" in loaded
    assert [m for m in loaded if _within(m, HEAVY)] == []


def _imported(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of ours in ``path``: module level, inside functions
    and under TYPE_CHECKING alike; ``from layerforge import x`` names ``layerforge.x``."""
    package = "layerforge.cli"  # every module checked is directly in it
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("layerforge")]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            if base == "layerforge":
                found += [
                    (node.lineno, f"layerforge.{a.name}")
                    for a in node.names
                    if a.name != "__version__"  # the package's own version string
                ]
            elif base.startswith("layerforge."):
                found.append((node.lineno, base))
    return sorted(found)


def test_cli_modules_import_only_api_and_the_leaves() -> None:
    paths = sorted(CLI.glob("*.py"))
    assert {"__init__", "main", "options", "commands"} <= {p.stem for p in paths}
    outside = [
        f"{path.name}:{line} imports {module}"
        for path in paths
        for line, module in _imported(path)
        if not _within(module, ALLOWED)
    ]
    assert outside == []


def test_the_import_check_sees_every_form(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from layerforge import __version__, api, plan\n"
        "import layerforge.oci.layout\n"
        "def f() -> None:\n"
        "    from layerforge.manifest import find_manifest\n"
        "    from . import options\n"
        "    from ..resolve import ResolveOptions\n"
    )
    assert [m for _, m in _imported(sample)] == [
        "layerforge.api",
        "layerforge.plan",
        "layerforge.oci.layout",
        "layerforge.manifest",
        "layerforge.cli",
        "layerforge.resolve",
    ]
