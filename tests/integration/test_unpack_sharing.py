"""Issue 13 items 1 and 4: layers are unpacked once, by digest, and roots are link farms of
them. Two images sharing a base unpack its layers once (one inode), a change in the middle of
a chain unpacks only the new layer, and nothing a sandbox runs can write through a link into
a shared layer tree: verify mounts the farm read-only, a system step works in a copy.

A tiny real project: a root base on a root filesystem made of the host's shell and a few
tools (tests/integration/hostroot.py), a stand-in interpreter, wheels from find_links."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from layerforge.cli import main
from tests.conftest import require_tools
from tests.integration.hostroot import copy_programs
from tests.wheelkit import make_wheel

pytestmark = pytest.mark.integration

BIG = "usr/share/big.bin"
HEAD = """
[project]
name = "share"
python = "3.11"
find_links = ["wheels"]

[bases.os]
from = "rootfs:os"
"""


def write_root(project: Path) -> None:
    root = project / "os"
    (root / "usr/bin").mkdir(parents=True)
    (root / "bin").symlink_to("usr/bin")
    copy_programs(root, ("sh", "env", "cat", "chmod", "touch"))
    (root / "usr/bin/python3.11").write_text("#!/bin/sh\n")
    (root / "etc").mkdir()
    (root / "etc/os-release").write_text("ID=test\n")
    (root / "usr/share").mkdir(parents=True)
    (root / BIG).write_bytes(os.urandom(1 << 20))


def build(project: Path, cache: Path, *extra: str) -> None:
    common = ["-f", str(project), "--cache-dir", str(cache)]
    assert main(["lock", *common]) == 0
    assert main(["build", *common, *extra]) == 0


def files_named(cache: Path, name: str) -> list[Path]:
    return [p for p in cache.rglob(name) if p.is_file() and not p.is_symlink()]


def unpacked_bytes(cache: Path) -> int:
    """Disk used under layers/ and roots/, each inode once."""
    seen: set[int] = set()
    total = 0
    for area in ("layers", "roots"):
        for top, dirs, files in os.walk(cache / area):
            for name in (*dirs, *files):
                st = os.lstat(os.path.join(top, name))
                if st.st_ino not in seen:
                    seen.add(st.st_ino)
                    total += st.st_blocks * 512
    return total


def test_two_bases_sharing_a_root_unpack_its_layers_once(tmp_path: Path) -> None:
    require_tools("bwrap")
    project = tmp_path / "p"
    write_root(project)
    for name in ("pa", "pb"):
        make_wheel(project / "wheels", name, "1.0")
    check = f'verify = ["sh: test -s /{BIG}"]'
    (project / "layerforge.toml").write_text(
        HEAD + f'\n[bases.a]\nfrom = "os"\nrequirements = ["pa"]\n{check}\n'
        f'\n[bases.b]\nfrom = "os"\nrequirements = ["pb"]\n{check}\n'
    )
    cache = tmp_path / "cache"
    build(project, cache)
    copies = files_named(cache / "roots", "big.bin") + files_named(cache / "layers", "big.bin")
    assert len(copies) >= 3  # the os layer's tree, and the roots of a and b
    assert len({p.stat().st_ino for p in copies}) == 1
    assert len(files_named(cache / "layers", "big.bin")) == 1

    # gc brings the unpacked areas back to the cap, however recently they were used
    common = ["-f", str(project), "--cache-dir", str(cache)]
    assert unpacked_bytes(cache) > 1 << 20
    assert main(["gc", *common, "--cache-max", "100kB"]) == 0
    assert unpacked_bytes(cache) <= 100_000
    assert not files_named(cache, "big.bin")  # the os layer's tree went, with its roots
    assert main(["verify", *common]) == 0  # and is unpacked again when needed
    assert len(files_named(cache / "layers", "big.bin")) == 1


def test_mid_tier_change_reuses_the_upper_layer_trees(tmp_path: Path) -> None:
    """os -> mid -> top: a new requirement in mid unpacks mid's new layer and links top's
    unchanged layer again (same inode); the unpacked areas grow by far less than it."""
    require_tools("bwrap")
    project = tmp_path / "p"
    write_root(project)
    make_wheel(project / "wheels", "pm", "1.0")
    make_wheel(project / "wheels", "pm_extra", "1.0")
    make_wheel(project / "wheels", "pt", "1.0", files={"pt/blob.bin": os.urandom(2 << 20)})
    site = "/opt/venv/lib/python3.11/site-packages"
    text = HEAD + (
        '\n[bases.mid]\nfrom = "os"\nrequirements = [{mid}]\n'
        '\n[bases.top]\nfrom = "mid"\nrequirements = ["pt"]\n'
        f'verify = ["sh: test -s {site}/pt/blob.bin && test -d {site}/pm"]\n'
    )
    (project / "layerforge.toml").write_text(text.format(mid='"pm"'))
    cache = tmp_path / "cache"
    build(project, cache)
    (before,) = files_named(cache / "layers", "blob.bin")
    inode = before.stat().st_ino
    size = unpacked_bytes(cache)

    (project / "layerforge.toml").write_text(text.format(mid='"pm", "pm_extra"'))
    build(project, cache)
    blobs = files_named(cache / "layers", "blob.bin")
    assert [p.stat().st_ino for p in blobs] == [inode]  # top's layer: not unpacked again
    roots = files_named(cache / "roots", "blob.bin")
    assert len(roots) == 2 and {p.stat().st_ino for p in roots} == {inode}
    assert unpacked_bytes(cache) - size < 1 << 20


@pytest.mark.parametrize("runner", ["bwrap", "chroot"])
def test_the_sandbox_cannot_write_into_a_shared_layer_tree(tmp_path: Path, runner: str) -> None:
    """A verify statement that writes, appends, truncates, chmods and touches a file of the
    image finds the root read-only; a run step that does the same works in its own copy.
    Either way the file of the layer tree (linked by every root) is as it was."""
    require_tools("bwrap" if runner == "bwrap" else "unshare")
    project = tmp_path / "p"
    write_root(project)
    make_wheel(project / "wheels", "pa", "1.0")
    attempts = [
        f"echo pwned >> /{BIG}",
        f": > /{BIG}",
        f"chmod 4777 /{BIG}",
        f"touch -d @0 /{BIG}",
        "echo new > /usr/share/new.txt",
    ]
    refused = " && ".join(f"! ({a}) 2>/dev/null" for a in attempts)
    run = "; ".join(attempts)
    (project / "layerforge.toml").write_text(
        HEAD + f'\n[bases.a]\nfrom = "os"\nrequirements = ["pa"]\nverify = ["sh: {refused}"]\n'
        f'\n[bases.w]\nfrom = "a"\nrun = ["{run}"]\nverify = ["sh: test ! -s /{BIG}"]\n'
    )
    original = (project / "os" / BIG).read_bytes()
    cache = tmp_path / "cache"
    build(project, cache, "--runner", runner)
    trees = files_named(cache / "layers", "big.bin")  # the os layer's and w's system layer's
    (tree,) = [p for p in trees if p.read_bytes() == original]
    assert [p.stat().st_size for p in trees if p != tree] == [0]  # w's copy was truncated
    st = tree.stat()
    assert (st.st_mode & 0o7777, st.st_mtime) == (0o644, 0)  # as the os layer has it
    assert not (tree.parent / "new.txt").exists()
    linked = [p for p in files_named(cache / "roots", "big.bin") if p.stat().st_size]
    assert linked and {p.stat().st_ino for p in linked} == {st.st_ino}
