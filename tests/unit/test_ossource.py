"""OS sources: interpreter detection, rootfs directories and tarballs, hostile tarballs."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from layerforge.errors import SourceError, UnpackError
from layerforge.events import NullReporter
from layerforge.manifest import OSSource
from layerforge.oci.layout import Store
from layerforge.sources.base import SourceContext, find_python
from layerforge.sources.materialize import materialize
from tests.conftest import require_tools


def fake_rootfs(root: Path, version: str = "3.11") -> Path:
    (root / "usr/bin").mkdir(parents=True)
    (root / "etc/alternatives").mkdir(parents=True)
    (root / f"usr/bin/python{version}").write_bytes(b"\x7fELF not really")
    (root / f"usr/bin/python{version}").chmod(0o755)
    (root / "usr/bin/python3").symlink_to(f"python{version}")
    (root / "etc/alternatives/pager").write_text("pager\n")
    (root / "usr/bin/pager").symlink_to("/etc/alternatives/pager")  # absolute, as in Debian
    (root / "etc/os-release").write_text('ID=debian\nVERSION_ID="12"\n')
    os.link(root / "etc/os-release", root / "usr/os-release-link")
    (root / "bin").symlink_to("usr/bin")
    return root


def ctx_for(tmp: Path, python: str = "3.11") -> SourceContext:
    return SourceContext(Store.open(tmp / "store"), tmp / "cache", NullReporter(), python)


def test_find_python_picks_the_wanted_version(tmp_path: Path) -> None:
    info = find_python(fake_rootfs(tmp_path / "r"), "3.11", "bases.cpu.from")
    assert info.executable == "/usr/bin/python3.11"
    assert info.version == "3.11"


def test_wrong_python_is_refused_naming_both_versions(tmp_path: Path) -> None:
    with pytest.raises(SourceError) as info:
        find_python(fake_rootfs(tmp_path / "r", "3.12"), "3.11", "bases.cpu.from")
    text = str(info.value)
    assert "bases.cpu.from" in text and "3.12" in text and "'3.11'" in text
    assert "project.python = '3.12'" in text
    assert info.value.exit_code == 2


def test_no_python_at_all_says_how_to_get_one(tmp_path: Path) -> None:
    (tmp_path / "r/usr/bin").mkdir(parents=True)
    with pytest.raises(SourceError, match="no Python interpreter found") as info:
        find_python(tmp_path / "r", "3.11", "bases.cpu.from")
    assert "python3" in str(info.value.hint)


def test_rootfs_directory_and_tarball_give_the_same_layer(tmp_path: Path) -> None:
    root = fake_rootfs(tmp_path / "rootfs")
    tarball = tmp_path / "rootfs.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(root, arcname=".")
    from_dir = materialize(
        OSSource("rootfs", "rootfs", path=root), ctx_for(tmp_path / "a"), "bases.os", refresh=False
    )
    from_tar = materialize(
        OSSource("rootfs", "rootfs.tar.gz", path=tarball),
        ctx_for(tmp_path / "b"),
        "bases.os",
        refresh=False,
    )
    assert len(from_dir.layers) == len(from_tar.layers) == 1
    assert from_dir.layers[0].diff_id == from_tar.layers[0].diff_id
    assert from_dir.layers[0].descriptor.digest == from_tar.layers[0].descriptor.digest
    assert from_tar.python.executable == "/usr/bin/python3.11"
    unpacked = next((tmp_path / "b/cache/tarballs").iterdir())
    assert os.readlink(unpacked / "usr/bin/pager") == "/etc/alternatives/pager"
    assert (unpacked / "usr/os-release-link").stat().st_ino == (
        unpacked / "etc/os-release"
    ).stat().st_ino


def test_hostile_rootfs_tarball_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    tarball = tmp_path / "evil.tar"
    with tarfile.open(tarball, "w") as tar:
        info = tarfile.TarInfo("usr/bin/python3.11")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
        evil = tarfile.TarInfo("../../escaped")
        evil.size = 3
        tar.addfile(evil, io.BytesIO(b"abc"))
    ctx = ctx_for(tmp_path)
    with pytest.raises(UnpackError, match=r"'\.\./\.\./escaped' contains '\.\.'"):
        materialize(OSSource("rootfs", "evil.tar", path=tarball), ctx, "bases.os", refresh=False)
    assert not (tmp_path / "escaped").exists()
    assert not (tmp_path.parent / "escaped").exists()
    assert list((tmp_path / "cache/tarballs").iterdir()) == []
    assert Store.open(tmp_path / "store").blobs() == set()


def test_a_changed_project_python_is_checked_again_on_a_reused_source(tmp_path: Path) -> None:
    """Regression: the store's record of an OS source was reused without comparing the
    Python version, so wheels for 3.12 went into a 3.11 image once a store existed."""
    source = OSSource("rootfs", "rootfs", path=fake_rootfs(tmp_path / "rootfs"))
    first = materialize(source, ctx_for(tmp_path), "bases.os", refresh=False)
    assert first.python.version == "3.11"
    with pytest.raises(SourceError, match=r"project\.python is '3\.12'"):
        materialize(source, ctx_for(tmp_path, "3.12"), "bases.os", refresh=False)
    again = materialize(source, ctx_for(tmp_path), "bases.os", refresh=False)
    assert again == first


def test_a_misspelt_debootstrap_suite_is_a_manifest_error(tmp_path: Path) -> None:
    from layerforge.sources.debootstrap import debootstrap_rootfs

    require_tools("debootstrap")  # its suite scripts name the suites it knows
    source = OSSource("debootstrap", "bookwrom")
    with pytest.raises(SourceError) as info:
        debootstrap_rootfs(source, tmp_path / "cache", NullReporter(), "bases.cpu.from")
    assert info.value.exit_code == 2
    assert "bases.cpu.from: debootstrap knows no suite 'bookwrom'" in str(info.value)
    assert "did you mean 'bookworm'?" in str(info.value)
    assert not (tmp_path / "cache").exists()  # nothing written
