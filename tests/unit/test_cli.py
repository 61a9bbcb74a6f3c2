"""The CLI's contract: exit codes, messages, nothing written on a usage or manifest error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import layerforge
from layerforge.cli import main
from layerforge.manifest.schema import json_schema_text


def test_public_api_is_exported() -> None:
    for name in layerforge.__all__:
        assert getattr(layerforge, name) is not None
    with pytest.raises(AttributeError):
        _ = layerforge.nope


def test_shipped_schema_matches_the_model() -> None:
    shipped = Path(layerforge.__file__).parent / "layerforge.schema.json"
    assert shipped.read_text() == json_schema_text(), "run: layerforge schema > that file"


def test_schema_command_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["title"] == "layerforge.toml"
    assert "bases" in doc["properties"]


def test_manifest_error_exits_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "layerforge.toml").write_text(
        '[project]\nname = "x"\n[bases.cpu]\nfrom = { debootstrap = "bookworm" }\n'
        '[services.api]\nbase = "gpu"\n'
    )
    for verb in ("lock", "plan", "build"):
        assert main([verb, "-f", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert "services.api.base" in err and "no base named 'gpu'" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["layerforge.toml"]


def test_missing_manifest_says_how_to_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plan", "-f", str(tmp_path)]) == 2
    assert "layerforge init" in capsys.readouterr().err


def test_build_without_lock_says_to_lock(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "layerforge.toml").write_text(
        '[project]\nname = "x"\n[bases.cpu]\nfrom = { debootstrap = "bookworm" }\n'
    )
    assert main(["build", "-f", str(tmp_path)]) == 2
    assert "layerforge lock" in capsys.readouterr().err
    assert not (tmp_path / ".layerforge").exists()


def test_init_writes_a_manifest_that_parses(tmp_path: Path) -> None:
    assert main(["init", str(tmp_path / "new")]) == 0
    project = layerforge.load_project(
        layerforge.Workspace(tmp_path / "new/layerforge.toml", tmp_path / "s", tmp_path / "c")
    )
    assert list(project.nodes) == ["cpu"]
    assert main(["init", str(tmp_path / "new")]) == 2  # never overwrites


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frobnicate"]) == 2
    assert "No such command" in capsys.readouterr().err


def test_unknown_node_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "layerforge.toml").write_text(
        '[project]\nname = "x"\n[bases.cpu]\nfrom = { debootstrap = "bookworm" }\n'
    )
    (tmp_path / "layerforge.lock").write_text('version = 1\npython = "3.11"\nplatform = "x"\n')
    assert main(["plan", "-f", str(tmp_path), "cpux"]) == 2
    assert "did you mean 'cpu'" in capsys.readouterr().err


BAD_MANIFESTS = {
    "unknown key": (
        '[project]\nname = "x"\n[bases.cpu]\nfrom = { debootstrap = "bookworm" }\n'
        'requirments = ["six"]\n',
        ["bases.cpu", "requirments", "did you mean 'requirements'"],
    ),
    "cycle": (
        '[project]\nname = "x"\n[bases.a]\nfrom = "b"\n[bases.b]\nfrom = "a"\n',
        ["cycle", "a", "b"],
    ),
    "unknown base": (
        '[project]\nname = "x"\n[bases.cpu]\nfrom = { debootstrap = "bookworm" }\n'
        '[services.api]\nbase = "cpuu"\n',
        ["services.api.base", "did you mean 'cpu'"],
    ),
    "missing file": (
        '[project]\nname = "x"\n[bases.cpu]\nfrom = { debootstrap = "bookworm" }\n'
        'requirements = "reqs/cpu.txt"\n',
        ["bases.cpu.requirements", "reqs/cpu.txt"],
    ),
    "invalid requirement": (
        '[project]\nname = "x"\n[bases.cpu]\nfrom = { debootstrap = "bookworm" }\n'
        'requirements = ["numpy=>2"]\n',
        ["bases.cpu.requirements", "numpy=>2"],
    ),
    "pin conflict": (
        '[project]\nname = "x"\n[bases.cpu]\nfrom = { debootstrap = "bookworm" }\n'
        'requirements = ["six==1.16.0"]\n[services.api]\nbase = "cpu"\n'
        'requirements = ["six==1.17.0"]\n',
        ["services.api", "six==1.17.0", "bases.cpu", "1.16.0"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_MANIFESTS))
def test_every_manifest_error_exits_2_names_the_key_and_writes_nothing(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, expected = BAD_MANIFESTS[case]
    (tmp_path / "layerforge.toml").write_text(text)
    for verb in ("lock", "plan", "build"):
        assert main([verb, "-f", str(tmp_path), "--cache-dir", str(tmp_path / "cache")]) == 2
        err = capsys.readouterr().err
        assert str(tmp_path / "layerforge.toml") in err, err
        for fragment in expected:
            assert fragment in err, (fragment, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["layerforge.toml"]


def test_cli_reference_is_current() -> None:
    from layerforge.cli.doc import render

    current = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()
    assert current == render(), "run: python -m layerforge.cli.doc > docs/cli.md"
