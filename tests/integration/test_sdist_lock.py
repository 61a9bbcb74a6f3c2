"""A requirement that ships only a source distribution locks (issue 12, item 4).

``uv pip compile`` runs with ``--only-binary :all:`` first, so wheel choices never move;
only the packages uv names as having no wheel are retried with ``--no-binary NAME``. The
lock records the sdist with ``kind = "sdist"``; wheel entries are written as before.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from layerforge.cli import main
from tests.wheelkit import make_sdist, make_wheel, sha256_of

pytestmark = pytest.mark.integration


def project(root: Path, *reqs: str) -> Path:
    (root / "os/usr/bin").mkdir(parents=True, exist_ok=True)
    (root / "os/usr/bin/python3.11").write_text("#!/bin/sh\n")
    (root / "os/etc").mkdir(exist_ok=True)
    (root / "os/etc/os-release").write_text("ID=test\n")
    listed = ", ".join(f'"{r}"' for r in reqs)
    (root / "layerforge.toml").write_text(
        '[project]\nname = "sdists"\npython = "3.11"\nfind_links = ["wheels"]\n\n'
        f'[bases.base]\nfrom = "rootfs:os"\nrequirements = [{listed}]\n'
    )
    return root


def locked(root: Path) -> dict[str, dict[str, object]]:
    data = tomllib.loads((root / "layerforge.lock").read_text())
    return {str(p["name"]): p for p in data["nodes"]["base"]["packages"]}


def test_sdist_only_requirement_locks_and_wheels_stay_first(tmp_path: Path) -> None:
    root = project(tmp_path / "p", "lfsd-cext==1.0", "lfsd-both")
    wheels = root / "wheels"
    # lfsd-cext needs lfsd-dep, which has no wheel either: uv names it in a second round
    sdist = make_sdist(wheels, "lfsd_cext", "1.0", requires=("lfsd-dep",))
    dep = make_sdist(wheels, "lfsd_dep", "0.1")
    # lfsd-both: 1.0 has a wheel, 2.0 only an sdist; the wheel keeps winning.
    wheel = make_wheel(wheels, "lfsd_both", "1.0", tag="py3-none-any")
    make_sdist(wheels, "lfsd_both", "2.0")
    assert main(["lock", "-f", str(root), "--cache-dir", str(tmp_path / "cache")]) == 0
    pkgs = locked(root)
    cext = pkgs["lfsd-cext"]
    assert cext["kind"] == "sdist"
    assert cext["filename"] == sdist.name
    assert cext["sha256"] == sha256_of(sdist)
    assert str(cext["url"]).endswith(sdist.name)
    assert pkgs["lfsd-dep"]["kind"] == "sdist"
    assert pkgs["lfsd-dep"]["sha256"] == sha256_of(dep)
    both = pkgs["lfsd-both"]
    assert both["version"] == "1.0"
    assert both["filename"] == wheel.name
    assert "kind" not in both  # wheel entries are written exactly as before
    # a second lock is a no-op, and the lock reads back
    text = (root / "layerforge.lock").read_text()
    assert main(["lock", "-f", str(root), "--cache-dir", str(tmp_path / "cache")]) == 0
    assert (root / "layerforge.lock").read_text() == text
