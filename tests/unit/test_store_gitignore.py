"""The store keeps itself out of git (issue 14, item 5.4): a store layerforge creates holds
a `.gitignore` of `*`, so `git status` stays clean after a build; an existing store is not
touched, and store gc keeps the file."""

from __future__ import annotations

import subprocess
from pathlib import Path

from layerforge.cli import main
from layerforge.oci.layout import Store
from tests.integration.tiny import tiny_project


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout


def test_new_store_ignores_itself_in_git(tmp_path: Path) -> None:
    directory = tiny_project(tmp_path / "p")
    git(directory, "init", "-q")
    args = ["-f", str(directory), "--cache-dir", str(tmp_path / "cache")]
    assert main(["lock", *args]) == 0
    assert main(["build", *args, "--no-verify"]) == 0
    assert (directory / ".layerforge/.gitignore").read_text() == "*\n"
    status = git(directory, "status", "--porcelain", "--untracked-files=all")
    assert ".layerforge" not in status
    assert main(["gc", *args]) == 0
    assert (directory / ".layerforge/.gitignore").read_text() == "*\n"


def test_an_existing_store_is_not_touched(tmp_path: Path) -> None:
    root = tmp_path / "store"
    Store.open(root)
    (root / ".gitignore").unlink()
    Store.open(root)
    assert not (root / ".gitignore").exists()
