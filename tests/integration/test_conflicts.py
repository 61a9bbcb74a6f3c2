"""One `lock` reports every conflict of every tier and runtime group, whole.

Local wheels: `top` requires `alpha`, and `alpha` requires `beta>=2` and `gamma>=2`. The base
bakes `beta==1.0` and `gamma==1.0`; a runtime group of the base and a child service both need
`top`. uv alone stops at the first node and names only gamma, without saying the pin is
baked; layerforge must name both pins, for both the service and the group, each with the node
that bakes it, the requirement it blocks and the way out. A grandchild of the failed service
is listed as not resolved, and nothing is written.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.tiny import cli
from tests.wheelkit import make_wheel

pytestmark = pytest.mark.integration

MANIFEST = """
[project]
name = "conflicts"
python = "3.11"
find_links = ["wheels"]

[bases.base]
from = "rootfs:os"
requirements = ["beta==1.0", "gamma==1.0"]
runtime = { llm = ["top"] }

[bases.mid]
from = "base"
requirements = ["top"]

[services.svc]
base = "mid"
source = "svc"
command = ["python", "-m", "svc"]
"""


def write_project(root: Path) -> None:
    wheels = root / "wheels"
    make_wheel(wheels, "top", "1.0", requires=("alpha",))
    make_wheel(wheels, "alpha", "1.0", requires=("beta>=2", "gamma>=2"))
    for name in ("beta", "gamma"):
        make_wheel(wheels, name, "1.0")
        make_wheel(wheels, name, "2.0")
    (root / "os/usr/bin").mkdir(parents=True)
    (root / "os/usr/bin/python3.11").write_text("#!/bin/sh\n")
    (root / "os/etc/os-release").parent.mkdir(parents=True)
    (root / "os/etc/os-release").write_text("ID=test\n")
    (root / "svc/svc").mkdir(parents=True)
    (root / "svc/svc/__main__.py").write_text("print('hi')\n")
    (root / "layerforge.toml").write_text(MANIFEST)


def test_lock_reports_every_conflict_with_its_baked_pin(tmp_path: Path) -> None:
    write_project(tmp_path)
    code, _out, err = cli("lock", "-f", str(tmp_path), "--cache-dir", str(tmp_path / "cache"))
    assert code == 2, err
    assert "Traceback" not in err
    blocks = [line.strip() for line in err.splitlines() if line.strip().startswith("baked pin")]
    assert sorted(blocks) == sorted(
        [
            "baked pin beta==1.0 (bases.base) blocks beta>=2, required by alpha (via top)",
            "baked pin gamma==1.0 (bases.base) blocks gamma>=2, required by alpha (via top)",
        ]
        * 2
    ), err
    assert "bases.mid" in err and "bases.base.runtime.llm" in err
    # the failed tier's descendant is named, not resolved
    assert "services.svc: not resolved (its base failed)" in err
    # uv's own words are there whole (its explanation of the gamma conflict)
    assert "gamma==1.0" in err and "unsatisfiable" in err
    # the two ways out
    assert "move the pin" in err and "a base that does not bake it" in err
    assert not (tmp_path / "layerforge.lock").exists()
