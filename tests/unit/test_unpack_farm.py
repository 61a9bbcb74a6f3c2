"""Issue 13 item 1: each layer unpacked once (a tree per digest), chains assembled from the
trees as link farms. The farm must equal applying the layers, stay inside its root against
hostile layers (the red-team cases of test_unpack.py, run through trees and farms), and never
change a layer tree it links."""

from __future__ import annotations

import errno
import os
import stat
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from layerforge.errors import UnpackError
from layerforge.oci.layout import Store
from layerforge.oci.unpack import (
    LayerTree,
    assemble_root,
    chain_id,
    unpack_chain,
    unpack_layer_tree,
    unpack_layers,
)
from tests.unit.test_unpack import TAR, dir_, file, hardlink, layer, member, symlink

Apply = Callable[[Path, list[Path]], None]


def via_chain(root: Path, blobs: list[Path]) -> None:
    unpack_layers([(b, TAR) for b in blobs], root)


def via_farm(root: Path, blobs: list[Path]) -> None:
    """Each blob unpacked alone into a tree (beside ``root``), then the farm at ``root``."""
    cache = root.parent / "cache"
    store = Store.open(cache / "store")
    trees = [
        unpack_layer_tree(store, store.put_bytes(b.read_bytes()), TAR, cache / "layers")
        for b in blobs
    ]
    assemble_root(trees, root)


def signature(root: Path, *, dir_times: bool = True) -> dict[str, tuple[object, ...]]:
    """Everything observable of a tree: type, mode, owner, size, content, link target, mtime."""
    out: dict[str, tuple[object, ...]] = {}
    names: dict[int, list[str]] = {}  # inode -> the names it has in this root
    for top, _, filenames in os.walk(root):
        for name in filenames:
            path = os.path.join(top, name)
            names.setdefault(os.lstat(path).st_ino, []).append(os.path.relpath(path, root))
    for top, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            path = os.path.join(top, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, root)
            common = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = (*common, os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = (*common, st.st_mtime_ns if dir_times else None)
            else:
                out[rel] = (
                    *common,
                    Path(path).read_bytes(),
                    st.st_mtime_ns,
                    sorted(names[st.st_ino]),
                )
    return out


def test_link_farm_equals_applying_the_layers(tmp_path: Path) -> None:
    lower = layer(
        tmp_path / "1.tar",
        member("etc/", tarfile.DIRTYPE, mode=0o755, mtime=1_600_000_000),
        member("etc/motd", data=b"hi", mode=0o600, mtime=1_600_000_000),
        member("etc/keep", data=b"k", mode=0o4755, mtime=1_600_000_000),  # setuid: kept, as applied
        member("cfg/", tarfile.DIRTYPE, mode=0o750, mtime=1_600_000_000),
        member("cfg/old", data=b"o", mtime=1_600_000_000),
        member("cfg/sub/", tarfile.DIRTYPE, mode=0o700, mtime=1_600_000_000),
        member("was_dir/", tarfile.DIRTYPE, mtime=1_600_000_000),
        member("was_dir/x", data=b"x", mtime=1_600_000_000),
        symlink("was_link", "/etc"),
        member("usr/", tarfile.DIRTYPE, mtime=1_600_000_000),
        member("usr/lib/", tarfile.DIRTYPE, mtime=1_600_000_000),
        symlink("lib", "/usr/lib"),
        member("usr/lib/libc.so", data=b"elf", mode=0o755, mtime=1_600_000_000),
        hardlink("usr/lib/libc.so.6", "usr/lib/libc.so"),
        member("dev0", tarfile.CHRTYPE, devmajor=1, devminor=3),  # skipped, as applied
    )
    upper = layer(
        tmp_path / "2.tar",
        file("etc/.wh.motd", b""),
        member("cfg/", tarfile.DIRTYPE, mode=0o755, mtime=1_700_000_000),
        file("cfg/.wh..wh..opq", b""),
        member("cfg/new", data=b"n", mtime=1_700_000_000),
        symlink("was_dir", "/usr"),
        member("was_link/", tarfile.DIRTYPE, mode=0o711, mtime=1_700_000_000),
        member("was_link/in", data=b"i", mtime=1_700_000_000),
        member("lib/extra.so", data=b"more", mtime=1_700_000_000),  # through lower's lib ->
        hardlink("etc/keep2", "etc/keep"),  # a hardlink to a file of the layer below
    )
    top = layer(tmp_path / "3.tar", file("usr/lib/.wh.libc.so.6", b""), file("z", b"z"))
    blobs = [lower, upper, top]
    via_chain(tmp_path / "a" / "root", blobs)
    via_farm(tmp_path / "b" / "root", blobs)
    applied = signature(tmp_path / "a" / "root", dir_times=False)
    farmed = signature(tmp_path / "b" / "root", dir_times=False)
    assert farmed == applied
    assert "etc/motd" not in farmed and "cfg/old" not in farmed and "dev0" not in farmed
    assert (tmp_path / "b/root/usr/lib/extra.so").read_bytes() == b"more"
    # the farm's directories carry the modes and times of the top-most layer that lists them
    cfg = (tmp_path / "b/root/cfg").stat()
    assert (stat.S_IMODE(cfg.st_mode), int(cfg.st_mtime)) == (0o755, 1_700_000_000)


def test_chains_sharing_layers_share_their_files(tmp_path: Path) -> None:
    """Two chains over the same base: the base is unpacked once and both roots hold the same
    inode; the layer trees are not changed by assembling."""
    store = Store.open(tmp_path / "store")
    base = layer(tmp_path / "base.tar", dir_("usr"), file("usr/big.bin", os.urandom(4096)))
    one = layer(tmp_path / "one.tar", dir_("a"), file("a/one", b"1"))
    two = layer(tmp_path / "two.tar", dir_("a"), file("a/two", b"2"), file("usr/.wh.big.bin"))
    d_base, d1, d2 = (store.put_bytes(p.read_bytes()) for p in (base, one, two))
    trees, roots = tmp_path / "cache/layers", tmp_path / "cache/roots"
    r1 = unpack_chain(store, [(d_base, TAR), (d1, TAR)], trees, roots)
    r2 = unpack_chain(store, [(d_base, TAR), (d2, TAR)], trees, roots)
    r0 = unpack_chain(store, [(d_base, TAR)], trees, roots)
    assert r1.parent.name == chain_id([d_base, d1])
    inodes = {(r / "usr/big.bin").stat().st_ino for r in (r1, r0)}
    tree = LayerTree.load(trees / d_base.split(":")[1][:32])
    assert inodes == {(tree.tree / "usr/big.bin").stat().st_ino}
    assert not (r2 / "usr/big.bin").exists()  # the whiteout applies in its farm only
    assert (tree.tree / "usr/big.bin").is_file() and (r1 / "usr/big.bin").is_file()
    assert sorted(p.name for p in trees.iterdir()) == sorted(
        d.split(":")[1][:32] for d in (d_base, d1, d2)
    )
    assert tree.files == 1 and tree.dirs == 1 and tree.bytes >= 4096
    assert (r1 / "a/one").read_bytes() == b"1" and not (r1 / "a/two").exists()


# -- the red team, through trees and farms ----------------------------------------------------


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(outside, root): root (and the cache of trees beside it) lie three levels below
    ``outside``, which must stay as it is."""
    outside = tmp_path / "outside"
    root = outside / "a" / "b" / "root"
    root.parent.mkdir(parents=True)
    (outside / "etc").mkdir()
    (outside / "etc" / "passwd").write_text("host passwd\n")
    before = snapshot(outside, root.parent)
    yield outside, root
    assert snapshot(outside, root.parent) == before, "something was written outside the root"


def snapshot(outside: Path, mine: Path) -> dict[str, object]:
    seen: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(outside):
        if Path(dirpath) == mine:
            dirnames[:] = []
            continue
        for name in (*filenames, *dirnames):
            if Path(dirpath) / name == mine:
                continue
            st = os.lstat(Path(dirpath) / name)
            seen[os.path.join(dirpath, name)] = (st.st_mode, st.st_mtime_ns, st.st_nlink)
    return seen


APPLIERS = [pytest.param(via_chain, id="chain"), pytest.param(via_farm, id="farm")]


def refused(apply: Apply, root: Path, blobs: list[Path], *words: str) -> None:
    with pytest.raises(UnpackError) as err:
        apply(root, blobs)
    for word in words:
        assert word in str(err.value), str(err.value)


@pytest.mark.parametrize("apply", APPLIERS)
@pytest.mark.parametrize(
    ("members", "words"),
    [
        ([file("../../etc/x", b"pwned")], ("'..'",)),
        ([file("/etc/passwd", b"pwned")], ("absolute path",)),
        ([symlink("d", "../../.."), file("d/x", b"pwned")], ("above the root",)),
        ([dir_("a"), hardlink("a/passwd", "../../etc/passwd")], ("hardlink target",)),
        ([dir_("a"), hardlink("a/passwd", "/etc/passwd")], ("hardlink target",)),
        ([dir_("a"), hardlink("a/passwd", "a/../../etc/passwd")], ("hardlink target",)),
        ([symlink("e", "/etc"), hardlink("pw", "e/passwd")], ("does not exist in the image",)),
        ([symlink("s", "/etc/passwd"), hardlink("h", "s")], ("not a regular file",)),
        ([file("../../etc/.wh.passwd")], ("'..'",)),
    ],
)
def test_hostile_layer_is_refused(
    sandbox: tuple[Path, Path],
    tmp_path: Path,
    apply: Apply,
    members: list[object],
    words: tuple[str, ...],
) -> None:
    outside, root = sandbox
    blob = layer(tmp_path / "l.tar", *members)  # type: ignore[arg-type]
    refused(apply, root, [blob], *words)
    assert (outside / "etc" / "passwd").stat().st_nlink == 1


@pytest.mark.parametrize("apply", APPLIERS)
def test_hostile_lower_layer_is_refused(
    sandbox: tuple[Path, Path], tmp_path: Path, apply: Apply
) -> None:
    """A lower layer's symlink that climbs out, used by an upper layer's member, hardlink
    or whiteout: refused (the upper layer's tree alone has nothing to refuse)."""
    _, root = sandbox
    first = layer(tmp_path / "1.tar", dir_("a"), symlink("a/up", "../.."))
    for i, upper in enumerate(
        [
            [file("a/up/etc/passwd", b"pwned")],
            [hardlink("pw", "a/up/etc/passwd")],
            [file("a/up/etc/.wh.passwd")],
        ]
    ):
        second = layer(tmp_path / f"2-{i}.tar", *upper)
        refused(apply, root / str(i), [first, second], "above the root")


@pytest.mark.parametrize("apply", APPLIERS)
def test_file_over_symlinks_replaces_the_link(
    sandbox: tuple[Path, Path], tmp_path: Path, apply: Apply
) -> None:
    outside, root = sandbox
    first = layer(tmp_path / "1.tar", dir_("etc"), symlink("etc/passwd", "/etc/passwd"))
    first = layer(tmp_path / "1.tar", symlink("x", "../../../etc/passwd"), dir_("etc"))
    second = layer(
        tmp_path / "2.tar",
        symlink("etc/passwd", "/etc/passwd"),
        file("etc/passwd", b"root:x:0:0\n"),
        file("x", b"new"),
    )
    apply(root, [first, second])
    assert (root / "x").read_bytes() == b"new" and not (root / "x").is_symlink()
    assert (root / "etc/passwd").read_bytes() == b"root:x:0:0\n"
    assert (outside / "etc" / "passwd").read_text() == "host passwd\n"


@pytest.mark.parametrize("apply", APPLIERS)
def test_directory_over_a_symlink_to_the_host_changes_nothing_outside(
    sandbox: tuple[Path, Path], tmp_path: Path, apply: Apply
) -> None:
    """A lower layer's ``x -> HOST`` (absolute, so inside the root) and ``y -> ../../..``,
    then an upper layer listing ``x/`` and ``y/`` (mode 0777): the links are replaced by
    directories of the root; no host directory gets a mode or a time."""
    outside, root = sandbox
    first = layer(tmp_path / "1.tar", symlink("x", str(outside / "etc")), symlink("y", "../../.."))
    second = layer(
        tmp_path / "2.tar",
        member("x/", tarfile.DIRTYPE, mode=0o777, mtime=12345),
        member("y/", tarfile.DIRTYPE, mode=0o777, mtime=12345),
        file("y/f", b"f"),
    )
    apply(root, [first, second])
    assert (root / "x").is_dir() and not (root / "x").is_symlink()
    assert (root / "y/f").read_bytes() == b"f"


def test_assembling_never_changes_a_layer_tree(tmp_path: Path) -> None:
    """Whiteouts, opaque directories, replaced files, symlinks and directories, modes of
    directories set by upper layers: the lower layer's tree is byte for byte as it was."""
    store = Store.open(tmp_path / "store")
    lower = layer(
        tmp_path / "1.tar",
        member("d/", tarfile.DIRTYPE, mode=0o700, mtime=1),
        member("d/f", data=b"lower", mode=0o600, mtime=1),
        member("e/", tarfile.DIRTYPE, mode=0o755, mtime=1),
        member("e/g", data=b"g", mtime=1),
        member("h", data=b"h", mode=0o644, mtime=1),
        member("k", data=b"k", mode=0o644, mtime=1),
    )
    upper = layer(
        tmp_path / "2.tar",
        member("d/", tarfile.DIRTYPE, mode=0o777, mtime=99),
        member("d/f", data=b"upper!", mode=0o666, mtime=99),
        file("e/.wh..wh..opq"),
        symlink("h", "/d/f"),
        hardlink("h2", "k"),
    )
    d1, d2 = (store.put_bytes(p.read_bytes()) for p in (lower, upper))
    trees = tmp_path / "layers"
    tree = unpack_layer_tree(store, d1, TAR, trees)
    before = signature(tree.tree)
    root = unpack_chain(store, [(d1, TAR), (d2, TAR)], trees, tmp_path / "roots")
    assert (root / "d/f").read_bytes() == b"upper!" and not (root / "e/g").exists()
    assert signature(tree.tree) == before


@pytest.mark.parametrize("code", [errno.EMLINK, errno.EXDEV])
def test_a_file_that_cannot_be_linked_is_copied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    """A file at its filesystem's link limit (or a cache spanning filesystems): the farm gets
    a copy with the same content, mode and mtime."""
    blob = layer(tmp_path / "l.tar", dir_("d"), member("d/f", data=b"data", mode=0o751, mtime=7))
    store = Store.open(tmp_path / "store")
    tree = unpack_layer_tree(store, store.put_bytes(blob.read_bytes()), TAR, tmp_path / "layers")

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "link", refuse)
    root = assemble_root([tree], tmp_path / "root")
    copied, source = (root / "d/f").stat(), (tree.tree / "d/f").stat()
    assert copied.st_ino != source.st_ino and (root / "d/f").read_bytes() == b"data"
    assert (stat.S_IMODE(copied.st_mode), copied.st_mtime) == (0o751, 7)
