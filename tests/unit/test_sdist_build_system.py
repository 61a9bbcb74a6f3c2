"""``bases.X.build_system`` (issue 12, item 4): Debian packages present for the run steps
and sdist builds, taken out again before the system layer's diff, in the content key only
when declared."""

from __future__ import annotations

from pathlib import Path

import pytest

from layerforge.errors import ManifestError
from layerforge.lock.inputs import all_inputs
from layerforge.lock.lockfile import Lock, LockedNode, SourcePin
from layerforge.manifest import load
from layerforge.plan import node_inputs
from layerforge.sandbox.system import SystemSpec, build_only, installed_packages, steps

MANIFEST = """
[project]
name = "demo"

[bases.cpu]
from = {{ debootstrap = "bookworm" }}
run = ["true"]
{extra}
"""


def doc_of(tmp: Path, extra: str) -> dict[str, object]:
    (tmp / "layerforge.toml").write_text(MANIFEST.format(extra=extra))
    project = load(tmp / "layerforge.toml")
    source = SourcePin("debootstrap", "bookworm", (), "sha256:" + "e" * 64)
    locked = LockedNode(all_inputs(project)["cpu"], (), source)
    lock = Lock("3.11", "x86_64-manylinux_2_28", {"cpu": locked})
    return node_inputs(project, lock, project.nodes["cpu"], None, None).doc


def test_build_system_is_parsed_and_keyed_only_when_declared(tmp_path: Path) -> None:
    plain = doc_of(tmp_path, "")
    assert "build_system" not in plain
    declared = doc_of(tmp_path, 'build_system = ["gcc", "make=4.3-4.1"]')
    assert declared["build_system"] == ["gcc", "make=4.3-4.1"]
    assert {k: v for k, v in declared.items() if k != "build_system"} == plain
    project = load(tmp_path / "layerforge.toml")
    assert project.nodes["cpu"].build_system == ("gcc", "make=4.3-4.1")


def test_build_system_names_are_checked(tmp_path: Path) -> None:
    (tmp_path / "layerforge.toml").write_text(MANIFEST.format(extra='build_system = ["gcc; rm"]'))
    with pytest.raises(ManifestError, match="build_system"):
        load(tmp_path / "layerforge.toml")


def test_build_system_installed_with_system_then_purged() -> None:
    spec = SystemSpec(
        "bases.cpu",
        system=("libgomp1", "make"),
        run=("cc -o /x x.c",),
        build_system=("gcc", "libc6-dev=2.36-9", "make", "perl"),
    )
    got = steps(spec, installed=frozenset({"perl", "libgomp1"}))
    assert [label for label, _ in got] == ["system", "run[0]", "build_system"]
    assert "--no-install-recommends libgomp1 make gcc libc6-dev=2.36-9 perl" in got[0][1]
    # make is asked for by system, perl is in the parent: neither is taken out
    assert build_only(spec, frozenset({"perl"})) == ["gcc", "libc6-dev"]
    assert got[2][1].startswith(
        "apt-mark auto -qq gcc libc6-dev && apt-get autoremove --purge -y -q "
    )
    assert "APT::AutoRemove::SuggestsImportant=false" in got[2][1]


def test_without_build_system_the_steps_are_unchanged() -> None:
    spec = SystemSpec("bases.cpu", ("gcc",), ("true",))
    assert [label for label, _ in steps(spec, frozenset({"gcc"}))] == ["system", "run[0]"]


def test_installed_packages_from_the_dpkg_status(tmp_path: Path) -> None:
    status = tmp_path / "var/lib/dpkg/status"
    status.parent.mkdir(parents=True)
    status.write_text(
        "Package: make\nStatus: install ok installed\nDescription: x\n more\n\n"
        "Package: gone\nStatus: deinstall ok config-files\n\n"
        "Package: perl\nStatus: install ok installed\n"
    )
    assert installed_packages(tmp_path) == {"make", "perl"}
    assert installed_packages(tmp_path / "missing") == frozenset()
