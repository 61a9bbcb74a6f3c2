"""Issue 12 item 2: the C library of a root filesystem, read without running it, decides the
platform tag uv resolves for (``find_libc``, ``platform_tag``, ``wheel_needs``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from layerforge.errors import LockError
from layerforge.lock.inputs import check_libc, node_platform, wheel_needs
from layerforge.lock.lockfile import LockedGroup, LockedNode, Package, SourcePin
from layerforge.lock.uv import platform_tag
from layerforge.manifest import Project, load
from layerforge.sources.base import BaseImage, LibcInfo, find_libc


def glibc_bytes(minor: int) -> bytes:
    """What matters of a libc.so.6: its version-definition names, GLIBC_2.0 up to 2.MINOR."""
    names = b"".join(b"GLIBC_2.%d\x00" % n for n in range(minor + 1))
    return b"\x7fELF" + b"\x00" * 64 + names + b"GLIBC_PRIVATE\x00GNU C Library release\x00"


def test_glibc_behind_a_relative_lib_symlink(tmp_path: Path) -> None:
    (tmp_path / "usr/lib/x86_64-linux-gnu").mkdir(parents=True)
    (tmp_path / "usr/lib/x86_64-linux-gnu/libc.so.6").write_bytes(glibc_bytes(36))
    (tmp_path / "lib").symlink_to("usr/lib")
    assert find_libc(tmp_path) == LibcInfo("glibc", "2.36")


def test_glibc_behind_an_absolute_symlink_is_read_inside_the_root(tmp_path: Path) -> None:
    """``libc.so.6 -> /usr/lib64/libc-2.28.so``: the target is re-rooted, never the host's."""
    (tmp_path / "usr/lib64").mkdir(parents=True)
    (tmp_path / "usr/lib64/libc-2.28.so").write_bytes(glibc_bytes(28))
    (tmp_path / "lib64").mkdir()
    (tmp_path / "lib64/libc.so.6").symlink_to("/usr/lib64/libc-2.28.so")
    assert find_libc(tmp_path) == LibcInfo("glibc", "2.28")


def test_a_symlink_climbing_out_of_the_root_stays_inside(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "lib/x86_64-linux-gnu").mkdir(parents=True)
    (tmp_path / "host-libc.so.6").write_bytes(glibc_bytes(39))
    (root / "lib/x86_64-linux-gnu/libc.so.6").symlink_to("../../../host-libc.so.6")
    assert find_libc(root) is None


def test_musl_root(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib/ld-musl-x86_64.so.1").write_bytes(b"\x7fELF musl")
    (tmp_path / "lib/apk/db").mkdir(parents=True)
    (tmp_path / "lib/apk/db/installed").write_text("P:busybox\nV:1.36\n\nP:musl\nV:1.2.5-r0\n")
    assert find_libc(tmp_path) == LibcInfo("musl", "1.2.5")


def test_no_libc_in_a_stand_in_root(tmp_path: Path) -> None:
    (tmp_path / "usr/bin").mkdir(parents=True)
    (tmp_path / "usr/bin/python3.11").write_text("#!/bin/sh\n")
    assert find_libc(tmp_path) is None


@pytest.mark.parametrize(
    ("libc", "tag"),
    [
        (None, "x86_64-manylinux_2_28"),  # no libc found: today's tag, no lock moves
        ("glibc 2.17", "x86_64-manylinux_2_17"),
        ("glibc 2.27", "x86_64-manylinux_2_17"),
        ("glibc 2.29", "x86_64-manylinux_2_28"),  # uv has no 2_29 or 2_30
        ("glibc 2.31", "x86_64-manylinux_2_31"),
        ("glibc 2.36", "x86_64-manylinux_2_36"),
        ("glibc 2.41", "x86_64-manylinux_2_40"),  # uv accepts nothing above 2_40
        ("glibc 3.1", "x86_64-manylinux_2_40"),
        ("musl 1.2.5", "x86_64-unknown-linux-musl"),
    ],
)
def test_platform_tag(libc: str | None, tag: str) -> None:
    assert platform_tag("linux/amd64", libc) == tag


def test_platform_tag_refuses_a_glibc_older_than_2_17() -> None:
    with pytest.raises(LockError, match=r"bases.old: its OS source has glibc 2\.12.*2\.17"):
        platform_tag("linux/amd64", "glibc 2.12", "bases.old")


def fleet(tmp_path: Path) -> Project:
    (tmp_path / "os").mkdir()
    (tmp_path / "layerforge.toml").write_text(
        '[project]\nname = "t"\n\n[bases.cpu]\nfrom = "rootfs:os"\n\n'
        '[bases.gpu]\nfrom = "cpu"\n\n[bases.other]\nfrom = "rootfs:os"\n'
    )
    return load(tmp_path / "layerforge.toml")


def wheel(name: str, plat: str) -> Package:
    return Package(name, "1.0", f"{name}-1.0-cp311-cp311-{plat}.whl", "u", "0" * 64, 1)


def locked(libc: str | None, *packages: Package, runtime: tuple[Package, ...] = ()) -> LockedNode:
    pin = SourcePin("rootfs", "os", (), "sha256:ab", libc)
    return LockedNode("i", packages, pin, (LockedGroup("g", "i", runtime),) if runtime else ())


def test_each_chain_resolves_for_its_own_root(tmp_path: Path) -> None:
    p = fleet(tmp_path)
    nodes = {
        "cpu": locked("glibc 2.36"),
        "gpu": LockedNode("i"),
        "other": locked(None),
    }
    assert node_platform(p, nodes, "gpu") == "x86_64-manylinux_2_36"
    assert node_platform(p, nodes, "other") == "x86_64-manylinux_2_28"


def test_a_wheel_newer_than_the_base_glibc_is_refused_by_name(tmp_path: Path) -> None:
    p = fleet(tmp_path)
    ok = wheel("ok", "manylinux_2_17_x86_64.manylinux2014_x86_64")
    new = wheel("vllm", "manylinux_2_31_x86_64")
    nodes = {"cpu": locked("glibc 2.28", ok), "gpu": LockedNode("i", (new,)), "other": locked(None)}
    with pytest.raises(LockError) as info:
        check_libc(p, nodes, "cpu", "glibc 2.28")
    assert str(info.value).splitlines()[0] == (
        "bases.gpu: vllm-1.0-cp311-cp311-manylinux_2_31_x86_64.whl needs glibc 2.31; "
        "bases.cpu's OS source (rootfs:os) has glibc 2.28"
    )
    check_libc(p, nodes, "cpu", "glibc 2.31")
    check_libc(p, nodes, "cpu", None)  # unknown: nothing to check
    check_libc(p, nodes, "other", "glibc 2.17")  # not this root's chain


def test_runtime_group_wheels_and_musl_are_checked(tmp_path: Path) -> None:
    p = fleet(tmp_path)
    group = (wheel("late", "manylinux_2_34_x86_64"),)
    nodes = {"cpu": locked("glibc 2.31", runtime=group), "other": locked(None)}
    with pytest.raises(LockError, match=r"late-1\.0.*needs glibc 2\.34"):
        check_libc(p, nodes, "cpu", "glibc 2.31")
    musl = {"cpu": locked("musl", wheel("m", "musllinux_1_2_x86_64")), "other": locked(None)}
    check_libc(p, musl, "cpu", "musl")  # version unknown: the family is what can be checked
    check_libc(p, musl, "cpu", "musl 1.2.5")
    with pytest.raises(LockError, match=r"needs musl 1\.2; .* has musl 1\.1\.24"):
        check_libc(p, musl, "cpu", "musl 1.1.24")
    with pytest.raises(LockError, match=r"needs musl 1\.2; .* has glibc 2\.36"):
        check_libc(p, musl, "cpu", "glibc 2.36")


@pytest.mark.parametrize(
    ("filename", "needs"),
    [
        ("gl-2.0-cp311-cp311-manylinux_2_31_x86_64.whl", ("glibc", 2, 31)),
        ("gl-1.0-cp311-cp311-manylinux2014_x86_64.whl", ("glibc", 2, 17)),
        ("gl-1.0-cp311-cp311-manylinux1_x86_64.whl", ("glibc", 2, 5)),
        ("gl-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", ("glibc", 2, 17)),
        ("gl-1.0-cp311-cp311-musllinux_1_2_x86_64.whl", ("musl", 1, 2)),
        ("six-1.17.0-py2.py3-none-any.whl", None),
        ("https-no-wheel.tar.gz", None),
    ],
)
def test_wheel_needs(filename: str, needs: tuple[str, int, int] | None) -> None:
    assert wheel_needs(filename) == needs


def test_source_pin_writes_libc_only_when_known() -> None:
    plain = SourcePin("rootfs", "os", (), "sha256:ab")
    assert [k for k, _ in plain.fields()] == ["kind", "spec", "identity"]
    pin = SourcePin("rootfs", "os", (), "sha256:ab", "glibc 2.36")
    assert pin.fields()[-1] == ("libc", "glibc 2.36")
    assert SourcePin.from_fields(dict(pin.fields())) == pin
    assert SourcePin.from_fields(dict(plain.fields())).libc is None


def test_old_base_image_json_still_loads() -> None:
    old = {
        "format": 1,
        "identity": "sha256:ab",
        "description": "rootfs os",
        "layers": [],
        "env": ["PATH=/bin"],
        "python": {"executable": "/usr/bin/python3.11", "version": "3.11"},
    }
    image = BaseImage.from_json(old)
    assert image.libc is None
    with_libc = BaseImage.from_json(json.loads(json.dumps(image.to_json())) | {
        "libc": {"family": "glibc", "version": "2.36"}
    })  # fmt: skip
    assert with_libc.libc == LibcInfo("glibc", "2.36")
    assert BaseImage.from_json(with_libc.to_json()) == with_libc


def test_a_hand_edited_libc_is_a_lock_error() -> None:
    with pytest.raises(LockError, match=r"bases.cpu: libc = 'glibc two' is not a C library"):
        platform_tag("linux/amd64", "glibc two", "bases.cpu")
