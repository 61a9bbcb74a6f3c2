"""The manifest validation cache: a pure function of the TOML text, never stale."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from layerforge.errors import ManifestError
from layerforge.manifest import load

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fleet"

SMALL = """
[project]
name = "demo"

[bases.cpu]
from = { debootstrap = "bookworm" }
requirements = "requirements.txt"

[services.api]
base = "cpu"
source = "api"
command = ["python", "-m", "api"]
"""


def small(tmp: Path) -> Path:
    (tmp / "api").mkdir()
    (tmp / "requirements.txt").write_text("six\n")
    (tmp / "layerforge.toml").write_text(SMALL)
    return tmp / "layerforge.toml"


def entries(cache: Path) -> list[Path]:
    return sorted((cache / "manifest").glob("*.json")) if (cache / "manifest").is_dir() else []


def test_cached_project_equals_the_validated_one(tmp_path: Path) -> None:
    project = tmp_path / "fleet"
    shutil.copytree(EXAMPLE, project)
    manifest = project / "layerforge.toml"
    fresh = load(manifest)
    first = load(manifest, tmp_path / "cache")
    assert len(entries(tmp_path / "cache")) == 1
    second = load(manifest, tmp_path / "cache")  # served from the cache
    assert fresh == first == second


def test_a_cache_hit_does_not_import_pydantic(tmp_path: Path) -> None:
    manifest = small(tmp_path)
    script = (
        "import sys; from pathlib import Path; from layerforge.manifest import load; "
        f"load(Path({str(manifest)!r}), Path({str(tmp_path / 'cache')!r})); "
        "print('pydantic' in sys.modules)"
    )
    runs = [
        subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
        for _ in range(2)
    ]
    assert [r.stdout.strip() for r in runs] == ["True", "False"]


def test_files_the_manifest_names_are_read_on_every_load(tmp_path: Path) -> None:
    manifest = small(tmp_path)
    cache = tmp_path / "cache"
    assert [str(r) for r in load(manifest, cache).nodes["cpu"].requirements.lines] == ["six"]
    (tmp_path / "requirements.txt").write_text("six\nidna\n")
    lines = load(manifest, cache).nodes["cpu"].requirements.lines
    assert [str(r) for r in lines] == ["six", "idna"]
    shutil.rmtree(tmp_path / "api")
    with pytest.raises(ManifestError, match="source directory 'api' does not exist"):
        load(manifest, cache)


def test_an_edit_is_validated_again(tmp_path: Path) -> None:
    manifest = small(tmp_path)
    cache = tmp_path / "cache"
    load(manifest, cache)
    manifest.write_text(SMALL.replace('command = ["python", "-m", "api"]', "comand = []"))
    with pytest.raises(ManifestError, match="unknown key 'comand'; did you mean 'command'"):
        load(manifest, cache)
    assert len(entries(cache)) == 1  # an invalid manifest is never remembered


@pytest.mark.parametrize(
    "corrupt", ["{not json", "", "[]", "{}", '{"project": 1}', '{"project": {}, "bases": []}']
)
def test_a_corrupt_entry_is_ignored_and_replaced(tmp_path: Path, corrupt: str) -> None:
    manifest = small(tmp_path)
    cache = tmp_path / "cache"
    expected = load(manifest, cache)
    (entry,) = entries(cache)
    good = entry.read_text()
    assert json.loads(good)["project"]["name"] == "demo"
    entry.write_text(corrupt)
    assert load(manifest, cache) == expected
    assert entry.read_text() == good  # validated again and written back whole
    assert entries(cache) == [entry]


def test_an_unwritable_cache_only_costs_time(tmp_path: Path) -> None:
    manifest = small(tmp_path)
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache directory should be")
    assert load(manifest, blocker).nodes["api"].parent == "cpu"
