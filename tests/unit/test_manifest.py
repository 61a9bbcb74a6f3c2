"""Manifest parsing: every error names the file, the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from layerforge.errors import ManifestError
from layerforge.manifest import load

GOOD = """
[project]
name = "demo"
python = "3.11"

[bases.cpu]
from = { debootstrap = "bookworm", packages = ["libgomp1"] }
requirements = ["numpy==2.1.3", "six"]
verify = ["import numpy"]
max_size = "1GB"

[bases.ml]
from = "cpu"
requirements = "requirements/ml.txt"

[services.api]
base = "ml"
source = "services/api"
command = ["python", "-m", "api"]
env = { LOG_LEVEL = "info" }
"""


def write(tmp: Path, text: str, files: dict[str, str] | None = None) -> Path:
    (tmp / "requirements").mkdir(exist_ok=True)
    (tmp / "requirements/ml.txt").write_text("# ml tier\nidna>=3  # inline comment\n")
    (tmp / "services/api").mkdir(parents=True, exist_ok=True)
    for name, content in (files or {}).items():
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    manifest = tmp / "layerforge.toml"
    manifest.write_text(text)
    return manifest


def error_of(tmp: Path, text: str, files: dict[str, str] | None = None) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        load(write(tmp, text, files))
    assert info.value.exit_code == 2
    assert str(tmp / "layerforge.toml") in str(info.value) or info.value.file
    return info.value


def test_good_manifest_parses_into_typed_nodes(tmp_path: Path) -> None:
    project = load(write(tmp_path, GOOD))
    assert list(project.nodes) == ["cpu", "ml", "api"]
    cpu, ml, api = project.nodes.values()
    assert cpu.os_source is not None and cpu.os_source.kind == "debootstrap"
    assert cpu.os_source.packages == ("libgomp1",)
    assert cpu.requirements.lines == ("numpy==2.1.3", "six")
    assert cpu.max_size == 1_000_000_000
    assert ml.parent == "cpu" and ml.requirements.lines == ("idna>=3",)
    assert api.parent == "ml" and api.source == (tmp_path / "services/api").resolve()
    assert api.env == (("LOG_LEVEL", "info"),)
    assert [n.name for n in project.ancestors("api")] == ["ml", "cpu"]
    assert project.descendants("cpu") == ["ml", "api"]


def test_unknown_key_suggests_the_right_one(tmp_path: Path) -> None:
    err = error_of(tmp_path, GOOD.replace('python = "3.11"', 'pythn = "3.11"'))
    assert "project.pythn" in str(err)
    assert "did you mean 'python'" in str(err)


def test_unknown_key_in_a_service(tmp_path: Path) -> None:
    err = error_of(tmp_path, GOOD.replace('command = ["python"', 'comand = ["python"'))
    assert "services.api.comand" in str(err) and "did you mean 'command'" in str(err)


def test_unknown_base_suggests_the_closest(tmp_path: Path) -> None:
    err = error_of(tmp_path, GOOD.replace('base = "ml"', 'base = "ml2"'))
    assert err.key == "services.api.base"
    assert "no base named 'ml2'; did you mean 'ml'?" in str(err)


def test_unknown_parent_base(tmp_path: Path) -> None:
    err = error_of(tmp_path, GOOD.replace('from = "cpu"', 'from = "cpux"'))
    assert err.key == "bases.ml.from" and "did you mean 'cpu'" in str(err)


def test_cycle_is_reported_with_its_path(tmp_path: Path) -> None:
    text = GOOD.replace(
        'from = { debootstrap = "bookworm", packages = ["libgomp1"] }', 'from = "ml"'
    )
    err = error_of(tmp_path, text)
    assert "cycle" in str(err)
    assert "cpu -> ml -> cpu" in str(err) or "ml -> cpu -> ml" in str(err)


def test_missing_requirements_file(tmp_path: Path) -> None:
    err = error_of(tmp_path, GOOD.replace("requirements/ml.txt", "requirements/nope.txt"))
    assert err.key == "bases.ml.requirements" and "does not exist" in str(err)


def test_missing_source_directory(tmp_path: Path) -> None:
    err = error_of(tmp_path, GOOD.replace('source = "services/api"', 'source = "services/x"'))
    assert err.key == "services.api.source"


def test_invalid_requirement_line_inline(tmp_path: Path) -> None:
    err = error_of(tmp_path, GOOD.replace('"six"', '"six>>=1"'))
    assert err.key == "bases.cpu.requirements" and "six>>=1" in str(err)


def test_invalid_requirement_line_in_file_names_file_and_line(tmp_path: Path) -> None:
    manifest = write(tmp_path, GOOD)
    (tmp_path / "requirements/ml.txt").write_text("idna\nnot a requirement!!\n")
    with pytest.raises(ManifestError) as info:
        load(manifest)
    assert "ml.txt" in str(info.value) and "line 2" in str(info.value)


def test_child_conflicting_with_ancestor_pin_names_both_sides(tmp_path: Path) -> None:
    err = error_of(
        tmp_path,
        GOOD.replace('command = ["python"', 'requirements = ["numpy<2"]\ncommand = ["python"'),
    )
    message = str(err)
    assert "services.api.requirements" in message
    assert "numpy<2" in message and "bases.cpu" in message and "numpy==2.1.3" in message


def test_wrong_type_says_what_to_write(tmp_path: Path) -> None:
    err = error_of(tmp_path, GOOD.replace('verify = ["import numpy"]', "verify = 3"))
    assert err.key is not None and err.key.startswith("bases.cpu.verify")


def test_bad_size(tmp_path: Path) -> None:
    err = error_of(tmp_path, GOOD.replace('max_size = "1GB"', 'max_size = "lots"'))
    assert "bases.cpu.max_size" in str(err) and "200MB" in str(err)


def test_invalid_toml(tmp_path: Path) -> None:
    err = error_of(tmp_path, "[project\nname=")
    assert "invalid TOML" in str(err)


def test_missing_project_name(tmp_path: Path) -> None:
    err = error_of(tmp_path, GOOD.replace('name = "demo"', ""))
    assert err.key == "project.name" and "required" in str(err)


def test_invalid_image_name(tmp_path: Path) -> None:
    err = error_of(tmp_path, GOOD.replace("[services.api]", "[services.API]"))
    assert "services.API" in str(err)


def test_pyproject_requirements(tmp_path: Path) -> None:
    files = {"svc/pyproject.toml": '[project]\nname = "x"\ndependencies = ["idna>=3"]\n'}
    text = GOOD.replace(
        'requirements = "requirements/ml.txt"', 'requirements = "svc/pyproject.toml"'
    )
    project = load(write(tmp_path, text, files))
    assert project.nodes["ml"].requirements.lines == ("idna>=3",)


def test_included_requirement_files(tmp_path: Path) -> None:
    files = {"requirements/common.txt": "six\n"}
    manifest = write(tmp_path, GOOD, files)
    (tmp_path / "requirements/ml.txt").write_text("-r common.txt\nidna\n")
    assert load(manifest).nodes["ml"].requirements.lines == ("six", "idna")


def test_rootfs_source_must_exist(tmp_path: Path) -> None:
    text = GOOD.replace(
        'from = { debootstrap = "bookworm", packages = ["libgomp1"] }', 'from = "rootfs:nowhere"'
    )
    err = error_of(tmp_path, text)
    assert err.key == "bases.cpu.from" and "does not exist" in str(err)


def test_oci_source_must_be_a_layout(tmp_path: Path) -> None:
    (tmp_path / "layout").mkdir()
    text = GOOD.replace(
        'from = { debootstrap = "bookworm", packages = ["libgomp1"] }', 'from = "oci:layout:v1"'
    )
    err = error_of(tmp_path, text)
    assert "not an OCI image layout" in str(err)
