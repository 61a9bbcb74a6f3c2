"""system, run, network and context are part of a base's content key; verify is not."""

from __future__ import annotations

from pathlib import Path

import pytest

from layerforge.errors import ManifestError
from layerforge.lock.lockfile import Lock
from layerforge.manifest import Project, load
from layerforge.plan import Step
from tests.unit.test_plan import plan_for, project_and_lock

EXTRA = """
system = ["libgomp1"]
run = ["sh /context/build.sh"]
context = "native"
verify = ["import torch"]
"""


def with_system(tmp: Path, extra: str = EXTRA) -> Path:
    project_and_lock(tmp)  # writes the services and the manifest
    (tmp / "native").mkdir(exist_ok=True)
    (tmp / "native/build.sh").write_text("echo build\n")
    manifest = tmp / "layerforge.toml"
    text = manifest.read_text()
    manifest.write_text(
        text.replace('requirements = ["torch"]\n', f'requirements = ["torch"]{extra}')
    )
    return manifest


def rebuilt(tmp: Path, first: dict[str, Step], old: str, new: str) -> dict[str, Step]:
    manifest = tmp / "layerforge.toml"
    manifest.write_text(manifest.read_text().replace(old, new))
    _, lock = project_and_lock_keep(tmp)
    return plan_for(load(manifest), lock, first)


def project_and_lock_keep(tmp: Path) -> tuple[Project, Lock]:
    text = (tmp / "layerforge.toml").read_text()
    result = project_and_lock(tmp)
    (tmp / "layerforge.toml").write_text(text)
    return result


def first_plan(tmp: Path) -> dict[str, Step]:
    manifest = with_system(tmp)
    _, lock = project_and_lock_keep(tmp)
    return plan_for(load(manifest), lock)


def building(steps: dict[str, Step]) -> set[str]:
    return {n for n, s in steps.items() if s.status == "build"}


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('system = ["libgomp1"]', 'system = ["libgomp1", "zstd"]'),
        ('run = ["sh /context/build.sh"]', 'run = ["sh /context/build.sh", "true"]'),
        ('context = "native"', 'context = "native"\nnetwork = false'),
    ],
)
def test_system_inputs_change_the_key(tmp_path: Path, old: str, new: str) -> None:
    first = first_plan(tmp_path)
    steps = rebuilt(tmp_path, first, old, new)
    assert building(steps) == {"cpu", "ml", "api", "rag"}
    assert steps["cpu"].reasons == ("system packages or run steps changed",)


def test_context_file_change_changes_the_key(tmp_path: Path) -> None:
    first = first_plan(tmp_path)
    (tmp_path / "native/build.sh").write_text("echo changed\n")
    _, lock = project_and_lock_keep(tmp_path)
    steps = plan_for(load(tmp_path / "layerforge.toml"), lock, first)
    assert "cpu" in building(steps)
    assert steps["cpu"].reasons == ("source changed: 1 file (build.sh)",)


def test_verify_change_keeps_the_key(tmp_path: Path) -> None:
    first = first_plan(tmp_path)
    steps = rebuilt(tmp_path, first, 'verify = ["import torch"]', 'verify = ["import os"]')
    assert building(steps) == set()


def test_missing_context_directory_is_a_manifest_error(tmp_path: Path) -> None:
    manifest = with_system(tmp_path, EXTRA.replace('"native"', '"nowhere"'))
    with pytest.raises(ManifestError) as err:
        load(manifest)
    assert err.value.key == "bases.cpu.context" and "does not exist" in str(err.value)


def test_compile_bytecode_changes_the_key(tmp_path: Path) -> None:
    first = first_plan(tmp_path)
    steps = rebuilt(
        tmp_path, first, 'context = "native"', 'context = "native"\ncompile_bytecode = true'
    )
    assert building(steps) == {"cpu", "ml", "api", "rag"}
    assert steps["cpu"].reasons == ("compile_bytecode changed",)
