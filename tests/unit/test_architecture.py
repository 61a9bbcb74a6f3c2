"""The package layout is a contract: no import cycles, no private names across modules, and
function-level imports of our own modules only where they buy something (the CLI's fast
``--help``, pydantic kept out of a cached manifest load). import-linter (``lint-imports``, run by
scripts/test.sh) checks the layers; these tests check what it does not.
"""

from __future__ import annotations

import ast
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "layerforge"

# Function-level imports of our own modules outside cli/, each with its reason.
LAZY_IMPORTS_ALLOWED = {
    "manifest/loader.py:layerforge.manifest.schema": "pydantic, only on a validation-cache miss",
    "api.py:layerforge.manifest.schema": "pydantic, only for `layerforge schema`",
}


def _modules() -> list[tuple[Path, ast.Module]]:
    return [(p, ast.parse(p.read_text())) for p in sorted(PACKAGE.rglob("*.py"))]


def _ours(node: ast.ImportFrom | ast.Import) -> list[str]:
    if isinstance(node, ast.ImportFrom):
        if node.level:
            return [node.module or "."]
        module = node.module or ""
        return [module] if module.startswith("layerforge") else []
    return [a.name for a in node.names if a.name.startswith("layerforge")]


def test_no_import_cycles() -> None:
    graph = grimp.build_graph("layerforge", cache_dir=None)  # TYPE_CHECKING imports count
    cycles = sorted(
        f"{a} -> {b} -> ... -> {a}"
        for a in graph.modules
        for b in graph.find_modules_directly_imported_by(a)
        if b != "layerforge" and graph.find_shortest_chain(importer=b, imported=a)
    )
    assert cycles == []


def test_no_private_names_imported_across_modules() -> None:
    """Not in src, and not in tests or bench either: a test of a private helper pins an
    implementation detail; make the helper public or test it through its caller. (ruff's
    PLC2701 is a preview rule that misses imports between modules of one package.)"""
    files = [*sorted(PACKAGE.rglob("*.py")), *sorted((ROOT / "tests").rglob("*.py"))]
    files += sorted((ROOT / "bench").rglob("*.py"))
    found = [
        f"{path.relative_to(ROOT)}:{node.lineno} from {node.module}: {alias.name}"
        for path in files
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and _ours(node)
        for alias in node.names
        if alias.name.startswith("_") and not alias.name.startswith("__")
    ]
    assert found == []


def test_function_level_imports_of_our_modules_only_in_the_cli() -> None:
    found: list[str] = []
    for path, tree in _modules():
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith("cli/"):
            continue
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    for module in _ours(node):
                        if f"{relative}:{module}" not in LAZY_IMPORTS_ALLOWED:
                            found.append(f"{relative}:{node.lineno} imports {module}")
    assert found == []


def test_only_the_edges_read_the_environment() -> None:
    """Registry settings, cache locations and the like come in as values: only the CLI, api
    (registry_config) and proc (the environment of the programs it runs) read os.environ;
    runtime/ is the launcher, run inside images."""
    allowed = ("api.py", "proc.py", "cli/", "runtime/")
    found = [
        f"{path.relative_to(PACKAGE)}:{node.lineno}"
        for path, tree in _modules()
        if not path.relative_to(PACKAGE).as_posix().startswith(allowed)
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "os"
        and node.attr in ("environ", "getenv", "environb")
    ]
    assert found == []
