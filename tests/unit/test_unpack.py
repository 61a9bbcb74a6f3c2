"""The unpacker against crafted layers: hostile members are refused and nothing is written
outside the target; whiteouts, opaque directories, hardlinks and modes are applied."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from layerforge.errors import UnpackError
from layerforge.oci.unpack import apply_layer, unpack_layers

TAR = "application/vnd.oci.image.layer.v1.tar"


def member(name: str, kind: bytes = tarfile.REGTYPE, **kw: object) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    data = kw.pop("data", b"")
    assert isinstance(data, bytes)
    for key, value in kw.items():
        setattr(info, key, value)
    if kind == tarfile.REGTYPE:
        info.size = len(data)
    return info, data


def file(name: str, data: bytes = b"x", mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    return member(name, data=data, mode=mode)


def dir_(name: str, mode: int = 0o755) -> tuple[tarfile.TarInfo, bytes]:
    return member(name, tarfile.DIRTYPE, mode=mode)


def symlink(name: str, target: str) -> tuple[tarfile.TarInfo, bytes]:
    return member(name, tarfile.SYMTYPE, linkname=target)


def hardlink(name: str, target: str) -> tuple[tarfile.TarInfo, bytes]:
    return member(name, tarfile.LNKTYPE, linkname=target)


def layer(path: Path, *members: tuple[tarfile.TarInfo, bytes]) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(outside, root): root lies three levels below ``outside``, which must stay as it is."""
    outside = tmp_path / "outside"
    root = outside / "a" / "b" / "root"
    root.mkdir(parents=True)
    (outside / "etc").mkdir()
    (outside / "etc" / "passwd").write_text("host passwd\n")
    before = snapshot(outside, root)
    yield outside, root
    assert snapshot(outside, root) == before, "something was written outside the root"


def snapshot(outside: Path, root: Path) -> dict[str, bytes | str]:
    """Everything below ``outside`` except the root's own content."""
    seen: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(outside):
        if Path(dirpath) == root:
            dirnames[:] = []
            continue
        for name in filenames:
            path = Path(dirpath) / name
            seen[str(path)] = path.read_bytes() if not path.is_symlink() else os.readlink(path)
        for name in dirnames:
            seen[str(Path(dirpath) / name)] = "dir"
    return seen


def refused(root: Path, blob: Path, *words: str) -> str:
    with pytest.raises(UnpackError) as err:
        apply_layer(root, blob, TAR, "evil")
    message = str(err.value)
    assert "evil" in message
    for word in words:
        assert word in message, message
    return message


def test_dotdot_member_is_refused(sandbox: tuple[Path, Path], tmp_path: Path) -> None:
    outside, root = sandbox
    blob = layer(tmp_path / "l.tar", file("../../etc/x", b"pwned"))
    refused(root, blob, "'../../etc/x'", "'..'")
    assert not (outside / "a" / "etc" / "x").exists()


def test_absolute_member_is_refused(sandbox: tuple[Path, Path], tmp_path: Path) -> None:
    _, root = sandbox
    blob = layer(tmp_path / "l.tar", file("/etc/passwd", b"pwned"))
    refused(root, blob, "absolute path")


def test_file_over_absolute_symlink_replaces_the_link(
    sandbox: tuple[Path, Path], tmp_path: Path
) -> None:
    """symlink etc/passwd -> /etc/passwd, then a file at the same name: the link is replaced,
    never written through (neither to the host's nor to the root's /etc/passwd)."""
    outside, root = sandbox
    blob = layer(
        tmp_path / "l.tar",
        dir_("etc"),
        symlink("etc/passwd", "/etc/passwd"),
        file("etc/passwd", b"root:x:0:0\n"),
    )
    apply_layer(root, blob, TAR)
    target = root / "etc" / "passwd"
    assert not target.is_symlink()
    assert target.read_bytes() == b"root:x:0:0\n"
    assert (outside / "etc" / "passwd").read_text() == "host passwd\n"


def test_file_over_relative_escaping_symlink_in_a_later_layer(
    sandbox: tuple[Path, Path], tmp_path: Path
) -> None:
    _, root = sandbox
    first = layer(tmp_path / "1.tar", symlink("x", "../../../etc/passwd"))
    second = layer(tmp_path / "2.tar", file("x", b"new"))
    unpack_layers([(first, TAR), (second, TAR)], root)
    assert (root / "x").read_bytes() == b"new" and not (root / "x").is_symlink()


def test_absolute_symlink_dir_resolves_inside_the_root(
    sandbox: tuple[Path, Path], tmp_path: Path
) -> None:
    """Debian's absolute links: lib -> /usr/lib; a member below it lands in root/usr/lib."""
    outside, root = sandbox
    blob = layer(
        tmp_path / "l.tar",
        dir_("usr"),
        dir_("usr/lib"),
        symlink("lib", "/usr/lib"),
        file("lib/libc.so", b"elf"),
        symlink("etc2", "/etc"),
        file("etc2/passwd", b"inside"),
    )
    apply_layer(root, blob, TAR)
    assert (root / "usr" / "lib" / "libc.so").read_bytes() == b"elf"
    assert (root / "lib").is_symlink() and os.readlink(root / "lib") == "/usr/lib"
    assert (root / "etc" / "passwd").read_bytes() == b"inside"
    assert (outside / "etc" / "passwd").read_text() == "host passwd\n"


def test_member_below_a_symlink_that_climbs_out_is_refused(
    sandbox: tuple[Path, Path], tmp_path: Path
) -> None:
    _, root = sandbox
    blob = layer(tmp_path / "l.tar", symlink("d", "../../.."), file("d/x", b"pwned"))
    refused(root, blob, "'d/x'", "above the root")


def test_symlink_climbing_out_in_a_later_layer_is_refused(
    sandbox: tuple[Path, Path], tmp_path: Path
) -> None:
    _, root = sandbox
    first = layer(tmp_path / "1.tar", dir_("a"), symlink("a/up", "../.."))
    second = layer(tmp_path / "2.tar", file("a/up/etc/passwd", b"pwned"))
    apply_layer(root, first, TAR)
    refused(root, second, "above the root")


@pytest.mark.parametrize("target", ["../../etc/passwd", "/etc/passwd", "a/../../etc/passwd"])
def test_hardlink_outside_the_root_is_refused(
    sandbox: tuple[Path, Path], tmp_path: Path, target: str
) -> None:
    _, root = sandbox
    blob = layer(tmp_path / "l.tar", dir_("a"), hardlink("a/passwd", target))
    refused(root, blob, "hardlink target")
    assert not (root / "a" / "passwd").exists()


def test_hardlink_through_a_symlink_to_the_host_is_refused(
    sandbox: tuple[Path, Path], tmp_path: Path
) -> None:
    """e -> /etc resolves inside the root, so the hardlink finds no file there."""
    outside, root = sandbox
    blob = layer(tmp_path / "l.tar", symlink("e", "/etc"), hardlink("pw", "e/passwd"))
    refused(root, blob, "does not exist in the image")
    assert (outside / "etc" / "passwd").stat().st_nlink == 1
    loop = layer(tmp_path / "2.tar", symlink("etc", "/etc"), file("etc/passwd", b"x"))
    refused(root, loop, "too many levels of symlinks")  # /etc -> /etc is a loop, as in Linux


def test_hardlink_to_a_symlink_is_refused(sandbox: tuple[Path, Path], tmp_path: Path) -> None:
    _, root = sandbox
    blob = layer(tmp_path / "l.tar", symlink("s", "/etc/passwd"), hardlink("h", "s"))
    refused(root, blob, "not a regular file")


def test_hardlinks_inside_the_root_share_an_inode(tmp_path: Path) -> None:
    root = tmp_path / "root"
    blob = layer(
        tmp_path / "l.tar",
        dir_("bin"),
        file("bin/python3.11", b"ELF", mode=0o755),
        hardlink("bin/python3", "bin/python3.11"),
    )
    apply_layer(root, blob, TAR)
    a, b = (root / "bin/python3.11").stat(), (root / "bin/python3").stat()
    assert (a.st_ino, a.st_dev) == (b.st_ino, b.st_dev)
    assert stat.S_IMODE(b.st_mode) == 0o755


def test_whiteout_deletes_a_lower_file_and_directory(tmp_path: Path) -> None:
    root = tmp_path / "root"
    lower = layer(
        tmp_path / "1.tar",
        dir_("etc"),
        file("etc/motd", b"hi"),
        file("etc/keep", b"k"),
        dir_("usr/share/doc/pkg"),
        file("usr/share/doc/pkg/README", b"r"),
    )
    upper = layer(
        tmp_path / "2.tar",
        file("etc/.wh.motd", b""),
        file("usr/share/doc/.wh.pkg", b""),
    )
    unpack_layers([(lower, TAR), (upper, TAR)], root)
    assert not (root / "etc/motd").exists()
    assert (root / "etc/keep").read_bytes() == b"k"
    assert not (root / "usr/share/doc/pkg").exists()
    assert not list(root.rglob(".wh.*"))


def test_opaque_directory_hides_lower_content_but_keeps_its_own(tmp_path: Path) -> None:
    root = tmp_path / "root"
    lower = layer(tmp_path / "1.tar", dir_("cfg"), file("cfg/old", b"o"), dir_("cfg/sub"))
    upper = layer(
        tmp_path / "2.tar", dir_("cfg"), file("cfg/new", b"n"), file("cfg/.wh..wh..opq", b"")
    )
    unpack_layers([(lower, TAR), (upper, TAR)], root)
    assert sorted(p.name for p in (root / "cfg").iterdir()) == ["new"]


def test_whiteout_cannot_delete_outside_the_root(
    sandbox: tuple[Path, Path], tmp_path: Path
) -> None:
    _, root = sandbox
    refused(root, layer(tmp_path / "1.tar", file("../../etc/.wh.passwd")), "'..'")
    evil = layer(tmp_path / "2.tar", symlink("e", "../../../etc"), file("e/.wh.passwd"))
    refused(root, evil, "above the root")


def test_modes_and_mtimes_are_kept(tmp_path: Path) -> None:
    root = tmp_path / "root"
    blob = layer(
        tmp_path / "l.tar",
        dir_("private", mode=0o700),
        file("private/key", b"k", mode=0o600),
        file("run.sh", b"#!/bin/sh\n", mode=0o755),
        member("suid", data=b"s", mode=0o4755, mtime=1_000_000),
        dir_("tmp", mode=0o1777),
    )
    apply_layer(root, blob, TAR)

    def mode(rel: str) -> int:
        return stat.S_IMODE((root / rel).lstat().st_mode)

    assert mode("private") == 0o700 and mode("private/key") == 0o600
    assert mode("run.sh") == 0o755 and mode("suid") == 0o4755 and mode("tmp") == 0o1777
    assert (root / "suid").stat().st_mtime == 1_000_000


def test_directory_replaces_a_lower_file_and_file_replaces_a_directory(tmp_path: Path) -> None:
    root = tmp_path / "root"
    lower = layer(tmp_path / "1.tar", file("x", b"f"), dir_("y"), file("y/z", b"z"))
    upper = layer(tmp_path / "2.tar", dir_("x"), file("x/inner", b"i"), file("y", b"now a file"))
    unpack_layers([(lower, TAR), (upper, TAR)], root)
    assert (root / "x/inner").read_bytes() == b"i"
    assert (root / "y").read_bytes() == b"now a file"


def test_damaged_tar_is_an_unpack_error(tmp_path: Path) -> None:
    blob = tmp_path / "bad.tar"
    blob.write_bytes(b"\x00garbage" * 200)
    with pytest.raises(UnpackError, match="not a valid tar layer"):
        apply_layer(tmp_path / "root", blob, TAR, "bad")
