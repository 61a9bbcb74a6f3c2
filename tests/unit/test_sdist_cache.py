"""The cache of wheels built from locked sdists (issue 12, item 4): what the key covers, what
an entry must hold to be used, and whose ``build_system`` a build gets."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from layerforge import cachedir
from layerforge.builder.sdist import (
    SdistBuild,
    build_system_of,
    cached_wheel,
    the_wheel,
    wheel_key,
)
from layerforge.errors import BuildError
from layerforge.events import NullReporter
from layerforge.lock.lockfile import Package
from layerforge.manifest import load
from layerforge.oci.layer import Layer
from layerforge.oci.layout import Descriptor, Store

MANIFEST = """
[project]
name = "demo"

[bases.root]
from = { debootstrap = "bookworm" }
build_system = ["gcc", "make"]

[bases.mid]
from = "root"
build_system = ["make", "libfoo-dev"]

[bases.leaf]
from = "mid"
"""

SDIST = Package("pyfoo", "1.0", "pyfoo-1.0.tar.gz", "file:///x", "a" * 64, 0, kind="sdist")


def layer(n: int) -> Layer:
    desc = Descriptor("application/vnd.oci.image.layer.v1.tar+gzip", f"sha256:{n:064x}", 1)
    return Layer(desc, f"sha256:{n:064x}", "test")


def make_build(tmp: Path) -> SdistBuild:
    (tmp / "layerforge.toml").write_text(MANIFEST)
    project = load(tmp / "layerforge.toml")
    store = Store.open(tmp / "store", create=True)
    return SdistBuild(store, tmp / "cache", NullReporter(), project, project.nodes["leaf"],
                      "3.11", "x86_64-manylinux_2_28", (layer(1), layer(2)))  # fmt: skip


def test_build_system_of_a_node_is_its_chains_root_first(tmp_path: Path) -> None:
    build = make_build(tmp_path)
    assert build_system_of(build.project, build.node) == ("gcc", "make", "libfoo-dev")
    assert build_system_of(build.project, build.project.nodes["root"]) == ("gcc", "make")


def test_wheel_key_covers_sdist_chain_python_platform_and_build_system(tmp_path: Path) -> None:
    build = make_build(tmp_path)
    key = wheel_key(build, SDIST)
    assert len(key) == 64 and cachedir.BUILT_WHEELS.kind_of(key) == "built-wheel"
    assert wheel_key(build, SDIST) == key
    others = [
        wheel_key(build, dataclasses.replace(SDIST, sha256="b" * 64)),
        wheel_key(dataclasses.replace(build, below=(layer(1), layer(3))), SDIST),
        wheel_key(dataclasses.replace(build, python="3.12"), SDIST),
        wheel_key(dataclasses.replace(build, platform="x86_64-manylinux_2_36"), SDIST),
        wheel_key(dataclasses.replace(build, node=build.project.nodes["root"]), SDIST),
    ]
    assert len({key, *others}) == 6


def test_cached_wheel_needs_its_metadata_its_wheel_and_the_same_sdist(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    entry = cachedir.BUILT_WHEELS.path(cache, "c" * 64)
    entry.mkdir(parents=True)
    assert cached_wheel(cache, "c" * 64, SDIST) is None  # empty
    meta = {"filename": "pyfoo-1.0-cp311-cp311-linux_x86_64.whl", "sha256": "d" * 64,
            "sdist": SDIST.sha256}  # fmt: skip
    (entry / "wheel.json").write_text(json.dumps(meta))
    assert cached_wheel(cache, "c" * 64, SDIST) is None  # no wheel file
    (entry / meta["filename"]).write_bytes(b"wheel")
    built = cached_wheel(cache, "c" * 64, SDIST)
    assert built is not None
    assert (built.name, built.path, built.sha256) == ("pyfoo", entry / meta["filename"], "d" * 64)
    assert cached_wheel(cache, "c" * 64, dataclasses.replace(SDIST, sha256="e" * 64)) is None
    (entry / "wheel.json").write_text("{not json")
    assert cached_wheel(cache, "c" * 64, SDIST) is None


def test_a_wheel_the_build_left_as_a_symlink_is_refused(tmp_path: Path) -> None:
    """The sandboxed build writes the output directory: a ``.whl`` that links to a host file
    must not be read (and cached, and installed) as the wheel."""
    build = make_build(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    secret = tmp_path / "host-secret"
    secret.write_bytes(b"PK\x03\x04 host file")
    (out / "pyfoo-1.0-cp311-cp311-linux_x86_64.whl").symlink_to(secret)
    with pytest.raises(BuildError, match="not a regular file"):
        the_wheel(out, build, SDIST)
    (out / "pyfoo-1.0-cp311-cp311-linux_x86_64.whl").unlink()
    with pytest.raises(BuildError, match="0 wheels"):
        the_wheel(out, build, SDIST)
    (out / "pyfoo-1.0-cp311-cp311-linux_x86_64.whl").write_bytes(b"PK")
    assert the_wheel(out, build, SDIST).name == "pyfoo-1.0-cp311-cp311-linux_x86_64.whl"
