from __future__ import annotations

import os
from pathlib import Path

from layerforge.sourcetree import scan


def make(tmp: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp


def test_dockerignore_and_always_ignored(tmp_path: Path) -> None:
    root = make(
        tmp_path,
        {
            "app/main.py": "x",
            "app/__pycache__/main.cpython-311.pyc": "c",
            "debug.log": "l",
            "tests/test_x.py": "t",
            "keep.log": "k",
            ".git/HEAD": "h",
            ".dockerignore": "*.log\n!keep.log\ntests/\n",
        },
    )
    paths = [f.path for f in scan(root).files]
    assert paths == ["app/main.py", "keep.log"]


def test_digest_tracks_content_and_mode_not_mtime(tmp_path: Path) -> None:
    root = make(tmp_path, {"a.py": "1", "b/c.py": "2"})
    first = scan(root).digest
    os.utime(root / "a.py", (1, 1))
    assert scan(root).digest == first
    (root / "a.py").chmod(0o755)
    second = scan(root).digest
    assert second != first
    (root / "b/c.py").write_text("3")
    assert scan(root).digest != second


def test_modes_are_normalised(tmp_path: Path) -> None:
    root = make(tmp_path, {"a.py": "1", "run.sh": "#!/bin/sh"})
    (root / "a.py").chmod(0o600)
    (root / "run.sh").chmod(0o700)
    modes = {f.path: f.mode for f in scan(root).files}
    assert modes == {"a.py": 0o644, "run.sh": 0o755}
