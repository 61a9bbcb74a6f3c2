"""Issue 15 step 1, through uv: a ``-c`` line of a requirements file constrains the lock, and
a ``--hash`` continuation and a matching ``--find-links`` line are read, not refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from layerforge.cli import main
from layerforge.lock import lockfile
from tests.wheelkit import make_wheel

pytestmark = pytest.mark.integration


def test_constraints_file_constrains_the_lock(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "p"
    (root / "os/usr/bin").mkdir(parents=True)
    (root / "os/usr/bin/python3.11").write_text("#!/bin/sh\n")
    (root / "os/etc/os-release").parent.mkdir(parents=True)
    (root / "os/etc/os-release").write_text("ID=test\n")
    for version in ("1.0", "2.0"):
        make_wheel(root / "wheels", "pkga", version)
    (root / "reqs").mkdir()
    (root / "reqs/base.txt").write_text(
        "--find-links ../wheels\n-c constraints.txt\npkga \\\n    --hash=sha256:00\n"
    )
    (root / "reqs/constraints.txt").write_text("pkga<2\n")
    (root / "layerforge.toml").write_text(
        '[project]\nname = "c"\npython = "3.11"\nfind_links = ["wheels"]\n\n'
        '[bases.base]\nfrom = "rootfs:os"\nrequirements = "reqs/base.txt"\n'
    )
    code = main(["lock", "-f", str(root), "--cache-dir", str(tmp_path / "cache")])
    assert code == 0, capsys.readouterr().err[-2000:]
    lock = lockfile.read_optional(root / "layerforge.lock")
    assert lock is not None
    assert [p.pin for p in lock.nodes["base"].packages] == ["pkga==1.0"]
    # the constraint is an input: changing it makes the lock stale
    (root / "reqs/constraints.txt").write_text("pkga<3\n")
    code = main(["lock", "--check", "-f", str(root), "--cache-dir", str(tmp_path / "cache")])
    assert code == 2
