"""Issue 15 item 1, end to end: ``layerforge init --from REPO --os debootstrap`` on the two
fixture repositories (tests/migratekit.py) writes a manifest that locks (init checks it),
builds and verifies; the C library the tiered fleet's cpu base compiles from its context is
checked by the Dockerfile's own ``python -c`` smoke test, now a verify statement."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from layerforge.cli import main
from tests.conftest import require_tools
from tests.migratekit import tiered_fleet, universal_worker

pytestmark = pytest.mark.integration


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("fixture", [tiered_fleet, universal_worker])
def test_init_from_locks_builds_verifies(
    tmp_path: Path, shared_cache: Path, capsys: pytest.CaptureFixture[str], fixture: Any
) -> None:
    require_tools("debootstrap", "bwrap")
    root = fixture(tmp_path / "repo")
    cache = ["--cache-dir", str(shared_cache)]
    code, out, err = run(
        capsys, "init", "--from", str(root), "--os", "debootstrap", "--json", *cache
    )
    assert code == 0, err[-3000:]
    doc = json.loads(out)
    assert doc["lock_error"] is None and doc["problems"] == []
    assert (root / "layerforge.lock").is_file()
    manifest = ["-f", str(root)]
    code, _, err = run(capsys, "lock", "--check", *manifest, *cache)
    assert code == 0, err[-2000:]
    code, _, err = run(capsys, "build", *manifest, *cache)
    assert code == 0, err[-3000:]
    code, out, err = run(capsys, "verify", *manifest, *cache)
    assert code == 0, (out + err)[-3000:]
    if fixture is tiered_fleet:  # the smoke test of the C library ran as a verify statement
        assert "fm_add(2, 3) == 5" in out + err
