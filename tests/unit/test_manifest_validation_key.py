"""The manifest validation cache is keyed on the code that validates, not only on schema.py:
an edit to any module validation runs (sizes.py, oci/reference.py, manifest/parse.py...) or another
pydantic validates the manifest again, even when layerforge's version number stays the same."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import layerforge
from layerforge.manifest.loader import VALIDATION_MODULES

PACKAGE = Path(layerforge.__file__).resolve().parent

FLEET = """
[project]
name = "demo"
registry = "127.0.0.1:5000/acme"

[bases.cpu]
from = { debootstrap = "bookworm" }
max_size = "9GB"

[services.api]
base = "cpu"
source = "api"
command = ["python", "-m", "api"]
"""

LOAD = """
import sys
from pathlib import Path
import layerforge
from layerforge.manifest import load
assert layerforge.__file__.startswith(sys.argv[3]), layerforge.__file__
print(load(Path(sys.argv[1]), Path(sys.argv[2])).registry)
"""


def load_with(package_parent: Path, toml: Path, cache: Path) -> tuple[int, str]:
    """(exit status, output) of a load by the layerforge copy under ``package_parent``."""
    proc = subprocess.run(
        [sys.executable, "-c", LOAD, str(toml), str(cache), str(package_parent)],
        env={"PYTHONPATH": str(package_parent), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return proc.returncode, proc.stdout.strip() + proc.stderr.strip()


def test_an_edit_to_a_validation_module_is_not_served_from_the_cache(tmp_path: Path) -> None:
    copy = tmp_path / "src"
    shutil.copytree(PACKAGE, copy / "layerforge", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "p/api").mkdir(parents=True)
    toml = tmp_path / "p/layerforge.toml"
    toml.write_text(FLEET)
    cache = tmp_path / "cache"
    assert load_with(copy, toml, cache) == (0, "127.0.0.1:5000/acme")
    assert load_with(copy, toml, cache) == (0, "127.0.0.1:5000/acme")  # a hit
    reference = copy / "layerforge/oci/reference.py"
    text = reference.read_text()
    check = '    """What is wrong with ``project.registry`` (\'host[:port][/path]\'), or None."""\n'
    assert check in text
    # a stricter namespace check (an upgrade that kept the version number, or a developer's
    # edit): the cached "valid" must not outlive it
    reference.write_text(text.replace(check, check + '    return "ports are not allowed"\n'))
    code, output = load_with(copy, toml, cache)
    assert code == 1, output
    assert "ManifestError" in output and "ports are not allowed" in output


def test_the_key_covers_every_layerforge_module_validation_imports() -> None:
    """Importing manifest and schema (what a validation runs) loads exactly these modules."""
    script = (
        "import sys, layerforge.manifest, layerforge.manifest.schema; "
        "print('\\n'.join(sorted(m.__file__ for n, m in sys.modules.items() "
        "if n == 'layerforge' or n.startswith('layerforge.'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.split()
    loaded = {Path(f).resolve().relative_to(PACKAGE).as_posix() for f in out}
    assert loaded == set(VALIDATION_MODULES)
