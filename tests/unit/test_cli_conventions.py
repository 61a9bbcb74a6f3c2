"""Conventions people type without thinking (issue 14, item 6): -q/-v on every verb,
SOURCE_DATE_EPOCH and LAYERFORGE_* environment defaults, shell completion of node names."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest

from layerforge.cli.main import cli as root_command
from layerforge.oci.image import created_at
from tests.integration.tiny import cli, cli_json, manifest_of, tiny_project


def leaves(command: click.Command, path: str = "layerforge") -> list[tuple[str, click.Command]]:
    if isinstance(command, click.Group):
        out: list[tuple[str, click.Command]] = []
        for name, sub in command.commands.items():
            out += leaves(sub, f"{path} {name}")
        return out
    return [(path, command)]


def test_every_verb_accepts_quiet_and_verbose() -> None:
    verbs = leaves(root_command)
    assert len(verbs) >= 15
    for path, command in verbs:
        flags = {opt for p in command.params for opt in p.opts}
        assert {"-q", "--quiet", "-v", "--verbose"} <= flags, path


def project(tmp_path: Path) -> tuple[Path, list[str]]:
    directory = tiny_project(tmp_path / "p")
    args = ["-f", str(directory), "--cache-dir", str(tmp_path / "cache")]
    assert cli("lock", *args)[0] == 0
    return directory, args


def test_quiet_keeps_only_the_result_and_verbose_shows_every_step(tmp_path: Path) -> None:
    _directory, args = project(tmp_path)
    code, out, err = cli("build", *args, "--no-verify", "--json", "-q")
    assert code == 0, err
    assert json.loads(out)["images"] and err == ""  # no event lines
    code, out, err = cli("build", *args, "--no-verify", "--json")
    assert code == 0 and err.strip()  # events by default (everything is cached now)
    code, out, err = cli("build", *args, "--no-verify", "-v", "--store", str(tmp_path / "s1"))
    assert code == 0, err
    plain = cli("build", *args, "--no-verify", "--store", str(tmp_path / "s2"))[2]
    assert len(err.splitlines()) > len(plain.splitlines())
    assert "start" in err or "→" in err


def test_source_date_epoch_env_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory, args = project(tmp_path)
    before = cli_json("plan", *args)["steps"][0]["key"]
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    after = cli_json("plan", *args)["steps"][0]["key"]
    assert after != before
    cli_json("build", *args, "--no-verify")
    annotations = manifest_of(directory / ".layerforge", "svc:latest")["annotations"]
    assert annotations["org.opencontainers.image.created"] == created_at(1700000000)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    code, _out, err = cli("plan", *args)
    assert code == 2 and "SOURCE_DATE_EPOCH" in err and "Traceback" not in err


def test_store_and_cache_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = tiny_project(tmp_path / "p")
    monkeypatch.setenv("LAYERFORGE_STORE", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("LAYERFORGE_CACHE_DIR", str(tmp_path / "cache"))
    assert cli("lock", "-f", str(directory))[0] == 0
    cli_json("build", "-f", str(directory), "--no-verify")
    assert (tmp_path / "elsewhere/oci-layout").is_file()
    assert not (directory / ".layerforge").exists()
    assert (tmp_path / "cache").is_dir()
    other = tmp_path / "given"  # the option wins over the environment
    cli_json("build", "-f", str(directory), "--no-verify", "--store", str(other))
    assert (other / "oci-layout").is_file()


def test_registry_env_overrides_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = tiny_project(tmp_path / "p", registry="registry.example/from-manifest")
    args = ["-f", str(directory), "--cache-dir", str(tmp_path / "cache")]
    assert cli("lock", *args)[0] == 0
    monkeypatch.setenv("LAYERFORGE_REGISTRY", "127.0.0.1:5000/from-env")
    assert cli("export", "github", *args)[0] == 0
    workflow = (directory / ".github/workflows/layerforge.yml").read_text()
    assert "127.0.0.1:5000/from-env" in workflow and "from-manifest" not in workflow
    monkeypatch.setenv("LAYERFORGE_REGISTRY", "Not A Registry")
    code, _out, err = cli("export", "github", *args)
    assert code == 2 and "LAYERFORGE_REGISTRY" in err


def test_completion_lists_node_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = tiny_project(tmp_path / "p")
    monkeypatch.chdir(directory)
    for words, incomplete, expected in (
        ("layerforge build", "", ["base", "svc"]),
        ("layerforge build", "s", ["svc"]),
        ("layerforge verify base", "", ["svc"]),
        (f"layerforge push -f {directory}", "b", ["base"]),
    ):
        from click.shell_completion import ShellComplete

        complete = ShellComplete(root_command, {}, "layerforge", "_LAYERFORGE_COMPLETE")
        args = words.split()[1:]
        got = [c.value for c in complete.get_completions(args, incomplete)]
        assert got == expected, (words, incomplete)
