"""Verifying a service after a code change: the new code is what runs, and the image is not
unpacked again (the parent's cached root filesystem + the application layer mounted)."""

from __future__ import annotations

from pathlib import Path

import pytest

from layerforge.cli import main
from tests.conftest import require_tools

pytestmark = pytest.mark.integration

MANIFEST = """
[project]
name = "svc-verify"
python = "3.11"

[bases.base]
from = "oci:{layout}:cpu:latest"

[services.svc]
base = "base"
source = "svc"
command = ["python", "-m", "svc"]
verify = ["import svc.flag; assert svc.flag.OK, 'flag is off'"]
"""


def test_code_change_is_verified_without_unpacking_the_image_again(
    fleet: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_tools("bwrap")
    project = tmp_path / "p"
    (project / "svc/svc").mkdir(parents=True)
    (project / "svc/svc/__init__.py").write_text("")
    flag = project / "svc/svc/flag.py"
    flag.write_text("OK = True\n")
    (project / "layerforge.toml").write_text(MANIFEST.format(layout=fleet / ".layerforge"))
    cache = tmp_path / "cache"
    args = ["-f", str(project), "--cache-dir", str(cache)]
    assert main(["lock", *args]) == 0
    assert main(["build", *args]) == 0
    unpacked = sorted(p.name for p in (cache / "roots").iterdir())

    flag.write_text("OK = True  # a code change\n")
    assert main(["build", *args]) == 0
    assert sorted(p.name for p in (cache / "roots").iterdir()) == unpacked

    # bytecode is cached for the parent's files, never for the application: Python checks
    # a .pyc by the source's mtime and size, and every layer entry has the same mtime
    flag.write_text("OK = True \n")
    assert main(["build", *args]) == 0
    pyc = cache / "pyc"
    assert any(pyc.rglob("*.pyc")) and not any(pyc.rglob("flag*.pyc"))
    flag.write_text("OK = False\n")  # the same size as the line before
    capsys.readouterr()
    assert main(["build", *args]) == 1
    err = capsys.readouterr().err
    assert "services.svc.verify" in err and "flag is off" in err
    assert sorted(p.name for p in (cache / "roots").iterdir()) == unpacked
