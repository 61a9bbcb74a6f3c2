"""The before/after diff that becomes a system layer, and the runners' command lines."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from layerforge.errors import ToolError, UsageError
from layerforge.oci.tarball import Entry
from layerforge.sandbox.diff import diff_trees
from layerforge.sandbox.runner import Bwrap, Chroot, Fds, Invocation, Mount, Podman, get_runner
from layerforge.sandbox.system import SystemSpec, steps
from tests.conftest import require_tools


def tree(root: Path) -> Path:
    for rel, data in {
        "etc/motd": "hi",
        "etc/keep": "k",
        "usr/share/doc/pkg/README": "r",
        "usr/share/doc/pkg/copyright": "c",
        "usr/bin/tool": "#!/bin/sh\n",
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(data)
    (root / "root").mkdir(mode=0o700)
    (root / "root").chmod(0o700)
    return root


def copy(before: Path, after: Path) -> Path:
    shutil.copytree(before, after, symlinks=True)
    return after


def by_path(entries: list[Entry]) -> dict[str, Entry]:
    return {e.path: e for e in entries}


def test_unchanged_tree_gives_an_empty_layer(tmp_path: Path) -> None:
    before = tree(tmp_path / "a")
    assert diff_trees(before, copy(before, tmp_path / "b")) == []


def test_new_changed_and_deleted_paths(tmp_path: Path) -> None:
    before = tree(tmp_path / "a")
    after = copy(before, tmp_path / "b")
    (after / "etc/motd").unlink()
    shutil.rmtree(after / "usr/share/doc/pkg")
    (after / "etc/keep").write_text("changed")
    (after / "usr/local/lib").mkdir(parents=True)
    (after / "usr/local/lib/libx.so.1").write_bytes(b"ELF")
    (after / "usr/local/lib/libx.so").symlink_to("libx.so.1")
    (after / "root/.profile").write_text("x")
    entries = by_path(diff_trees(before, after))
    assert entries["etc/.wh.motd"].kind == "file" and entries["etc/.wh.motd"].size == 0
    assert "usr/share/doc/.wh.pkg" in entries  # one whiteout for the whole directory
    assert not [p for p in entries if p.startswith("usr/share/doc/pkg/")]
    assert entries["etc/keep"].source == after / "etc/keep"
    assert entries["usr/local/lib/libx.so"].linkname == "libx.so.1"
    assert entries["root"].mode == 0o700  # parents keep their real mode, not 0755
    assert "etc/motd" not in entries and "usr/bin/tool" not in entries


def test_same_size_rewrite_with_same_bytes_is_unchanged(tmp_path: Path) -> None:
    before = tree(tmp_path / "a")
    after = copy(before, tmp_path / "b")
    (after / "etc/keep").write_text("k")  # new mtime, same bytes
    os.utime(after / "etc/keep", (1, 1))
    assert diff_trees(before, after) == []
    (after / "etc/keep").write_text("K")  # same size, other bytes
    assert [e.path for e in diff_trees(before, after)] == ["etc", "etc/keep"]


def test_mode_change_is_a_change(tmp_path: Path) -> None:
    before = tree(tmp_path / "a")
    after = copy(before, tmp_path / "b")
    (after / "usr/bin/tool").chmod(0o755)
    assert by_path(diff_trees(before, after))["usr/bin/tool"].mode == 0o755


def test_caches_logs_and_pycache_never_reach_the_layer(tmp_path: Path) -> None:
    before = tree(tmp_path / "a")
    after = copy(before, tmp_path / "b")
    for rel in (
        "var/lib/apt/lists/some_InRelease",
        "var/cache/apt/archives/gcc.deb",
        "var/cache/apt/pkgcache.bin",
        "var/log/dpkg.log",
        "root/.cache/pip/http/x",
        "root/.cache/uv/y",
        "tmp/build/obj.o",
        "usr/lib/python3/dist-packages/m/__pycache__/m.cpython-311.pyc",
        "var/cache/ldconfig/aux-cache",
        "etc/resolv.conf",
        "context/build.sh",
    ):
        (after / rel).parent.mkdir(parents=True, exist_ok=True)
        (after / rel).write_text("junk")
    entries = by_path(diff_trees(before, after, skip=["/etc/resolv.conf", "/context"]))
    assert [p for p, e in entries.items() if e.kind != "dir"] == []  # only new empty dirs
    assert "usr/lib/python3/dist-packages/m" in entries
    for gone in ("var/lib/apt/lists", "var/cache/apt", "var/log", "root/.cache", "tmp", "context"):
        assert gone not in entries
    assert not [p for p in entries if "__pycache__" in p]


def test_new_hardlinks_point_at_the_first_path(tmp_path: Path) -> None:
    before = tree(tmp_path / "a")
    after = copy(before, tmp_path / "b")
    (after / "usr/bin/python3.11").write_bytes(b"ELF")
    os.link(after / "usr/bin/python3.11", after / "usr/bin/python3")
    os.link(after / "usr/bin/tool", after / "usr/bin/tool2")  # its twin is in a lower layer
    entries = by_path(diff_trees(before, after))
    assert entries["usr/bin/python3"].kind == "file"
    assert entries["usr/bin/python3.11"].kind == "hardlink"
    assert entries["usr/bin/python3.11"].linkname == "usr/bin/python3"
    assert entries["usr/bin/tool2"].kind == "file"  # a plain copy, not a link to a lower layer


def test_system_steps_order() -> None:
    spec = SystemSpec("bases.cpu", ("gcc", "libc6-dev"), ("make", "rm -rf /x"))
    got = steps(spec)
    assert [label for label, _ in got] == ["system", "run[0]", "run[1]"]
    assert "apt-get install -y -q --no-install-recommends gcc libc6-dev" in got[0][1]


INV = Invocation(
    rootfs=Path("/r"),
    argv=("/bin/sh", "-c", "true"),
    env=(("PATH", "/usr/bin"),),
    mounts=(Mount(Path("/host/apt"), "/var/cache/apt/archives"),),
    network=False,
    cwd="/app",
)


FDS = Fds(seccomp=7, info=8)


def test_bwrap_command_line() -> None:
    argv = Bwrap().argv(INV, FDS)
    joined = " ".join(argv)
    assert "--bind /r / --proc /proc --dev /dev" in joined
    assert "--ro-bind-try /proc/sys /proc/sys" in joined
    assert "--perms 1777 --tmpfs /tmp" in joined
    assert "--die-with-parent" in argv and "--unshare-all" in argv
    assert "--share-net" not in argv
    assert "--bind /host/apt /var/cache/apt/archives" in joined
    assert "--chdir /app --setenv PATH /usr/bin -- /bin/sh -c true" in joined
    online = Bwrap().argv(Invocation(Path("/r"), ("true",), read_only=True, network=True), FDS)
    assert "--share-net" in online and "--ro-bind /r /" in " ".join(online)


def test_chroot_and_podman_command_lines() -> None:
    if os.geteuid() != 0:
        with pytest.raises(ToolError, match="needs root"):
            Chroot().argv(INV, FDS)
    else:
        argv = Chroot().argv(INV, FDS)
        assert "--net" in argv and "--mount" in argv
        assert "mount --bind /host/apt /r/var/cache/apt/archives" in argv[-1]
        # chroot lives in /usr/sbin, often off a user's PATH: the script names it absolutely
        assert "exec /usr/sbin/chroot /r" in argv[-1] or "exec /sbin/chroot /r" in argv[-1]
    require_tools("podman")
    argv = Podman().argv(INV, FDS)
    assert argv[argv.index("--network") : argv.index("--network") + 2] == ["--network", "none"]
    assert "/host/apt:/var/cache/apt/archives:rw" in argv


def test_missing_runner_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UsageError, match="unknown runner"):
        get_runner("docker")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ToolError) as err:
        get_runner("bwrap")
    assert "apt-get install -y bubblewrap" in str(err.value)
