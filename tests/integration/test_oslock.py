"""Issue 16 item 1: the Debian packages of a debootstrap root are locked, and built exactly.

A real bookworm root (the machine's warm debootstrap cache for the lock; the .deb files in
the shared ``debs/`` area once fetched). ``lock`` writes one row per package and the archive
state; ``build`` makes the root from exactly those .debs, so a fresh cache (apart from the
.debs) gives the same OS layer; a version the archive no longer serves fails by name.
"""

from __future__ import annotations

import re
import shutil
import tarfile
from pathlib import Path

import pytest

from layerforge import proc
from layerforge.lock import lockfile
from layerforge.manifest.model import OSSource
from layerforge.oci.layout import Store
from layerforge.sources.debootstrap import debootstrap_key, dpkg_identity
from tests.integration.tiny import cli

pytestmark = pytest.mark.integration

MANIFEST = """
[project]
name = "oslock"
python = "3.11"

[bases.base]
from = { debootstrap = "bookworm" }
"""


def os_layer(root: Path) -> str:
    store = Store.open(root / ".layerforge", create=False)
    desc = store.resolve("base:latest")
    assert desc is not None
    digest: str = store.read_json(desc.digest)["layers"][0]["digest"]
    return digest


def build(root: Path, cache: Path) -> None:
    code, _out, err = cli("build", "-f", str(root), "--cache-dir", str(cache), "--no-verify")
    assert code == 0, err[-3000:]


def test_debootstrap_root_built_from_lock_is_identical_on_a_fresh_cache(
    tmp_path: Path, shared_cache: Path
) -> None:
    root = tmp_path / "project"
    root.mkdir()
    (root / "layerforge.toml").write_text(MANIFEST)
    code, _out, err = cli("lock", "-f", str(root), "--cache-dir", str(shared_cache))
    assert code == 0, err[-3000:]
    text = (root / "layerforge.lock").read_text()
    assert text.splitlines()[1] == "version = 2"
    lock = lockfile.loads(text)
    pin = lock.nodes["base"].source
    assert pin is not None and pin.identity is not None
    names = {r.name for r in pin.os}
    assert {"python3", "libc6", "base-files", "zlib1g"} <= names
    assert all(re.fullmatch(r"[0-9a-f]{64}", r.sha256) and r.size > 0 for r in pin.os)
    assert all(r.path.startswith("pool/main/") and r.suite == "bookworm" for r in pin.os)
    assert [a.suite for a in pin.archives] == ["bookworm"]
    assert pin.archives[0].inrelease.startswith("sha256:") and pin.archives[0].date
    # one line per package, so a diff shows exactly the packages that moved
    assert sum(1 for line in text.splitlines() if line.startswith('  { name = "')) == len(pin.os)
    # the machine's cached root (served as is today) gave the rows: the same identity
    cached = shared_cache / "debootstrap" / debootstrap_key(OSSource("debootstrap", "bookworm"))
    assert pin.identity == dpkg_identity(cached / "rootfs")
    # `lock --check` is clean, and `lock` again keeps the rows (no archive read)
    assert cli("lock", "--check", "-f", str(root))[0] == 0
    code, out, err = cli("lock", "-f", str(root), "--cache-dir", str(shared_cache))
    assert code == 0, err[-3000:]
    assert "unchanged" in out and (root / "layerforge.lock").read_text() == text

    build(root, shared_cache)
    first = os_layer(root)

    # a fresh store and a fresh cache holding only the .debs: the same OS layer bytes
    fresh = tmp_path / "fresh-cache"
    (fresh).mkdir()
    proc.run(["cp", "-al", str(shared_cache / "debs"), str(fresh / "debs")])
    again = tmp_path / "again"
    shutil.copytree(root, again, ignore=shutil.ignore_patterns(".layerforge"))
    build(again, fresh)
    assert os_layer(again) == first
    made = [p for p in (fresh / "debootstrap").iterdir() if not p.name.startswith(".")]
    assert len(made) == 1  # the root made from the lock, under a key of its own
    rootfs = made[0] / "rootfs"
    assert dpkg_identity(rootfs) == pin.identity
    assert (rootfs / "var/lib/dpkg/available").read_bytes() == b""
    sources = (rootfs / "etc/apt/sources.list").read_text()
    assert sources.startswith("deb http") and sources.endswith(" bookworm main\n")

    # a locked version the archive no longer serves (and no .deb of it here): exit 3, by name
    victim = next(r for r in pin.os if r.name == "zlib1g")
    gone = victim.path.replace(victim.version.split(":")[-1], "0.0.0-lf1")
    edited = text.replace(victim.path, gone).replace(victim.sha256, "0" * 64)
    (again / "layerforge.lock").write_text(edited)
    other = tmp_path / "other-cache"  # every other .deb is here: one request, a 404
    other.mkdir()
    proc.run(["cp", "-al", str(shared_cache / "debs"), str(other / "debs")])
    shutil.rmtree(again / ".layerforge")
    code, _out, err = cli("build", "-f", str(again), "--cache-dir", str(other), "--no-verify")
    assert code == 3, err[-3000:]
    assert "no longer serves 1 locked package" in err and f"zlib1g {victim.version}" in err
    assert "lock --upgrade-os" in err and "Traceback" not in err
    assert not (other / "debootstrap").exists() or not any(
        p for p in (other / "debootstrap").iterdir() if not p.name.startswith(".")
    )


def test_upgrade_os_reads_the_archive_again(tmp_path: Path, shared_cache: Path) -> None:
    """A row edited by hand (here: an older version) makes the lock stale; `lock
    --upgrade-os` reads the archive again (debootstrap's choice today, at the served
    versions) and writes back what it serves."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "layerforge.toml").write_text(MANIFEST)
    code, _out, err = cli("lock", "-f", str(root), "--cache-dir", str(shared_cache))
    assert code == 0, err[-3000:]
    text = (root / "layerforge.lock").read_text()
    pin = lockfile.loads(text).nodes["base"].source
    assert pin is not None
    victim = next(r for r in pin.os if r.name == "zlib1g")
    old = text.replace(f'version = "{victim.version}"', 'version = "1:1.2.11.dfsg-1"', 1)
    assert old != text
    (root / "layerforge.lock").write_text(old)
    code, _out, err = cli("lock", "--check", "-f", str(root))
    assert code == 2 and "out of date for: base" in err  # the rows do not give its identity
    code, _out, err = cli("plan", "-f", str(root))
    assert code == 2 and "run `layerforge lock`" in err and "Traceback" not in err
    code, out, err = cli("lock", "--upgrade-os", "-f", str(root), "--cache-dir", str(shared_cache))
    assert code == 0, err[-3000:]
    assert (root / "layerforge.lock").read_text() == text
    assert f"{len(pin.os)} Debian packages locked (bookworm of " in out


SYSTEM = """
[project]
name = "syslock"
python = "3.11"

[bases.base]
from = { debootstrap = "bookworm" }
system = ["libgomp1"]
network = false
"""


def status_in_layer(root: Path, ref: str) -> str:
    store = Store.open(root / ".layerforge", create=False)
    desc = store.resolve(ref)
    assert desc is not None
    layers = store.read_json(desc.digest)["layers"]
    with tarfile.open(store.blob_path(layers[-1]["digest"])) as tf:
        member = tf.extractfile("var/lib/dpkg/status")
        assert member is not None
        return member.read().decode()


def test_system_step_installs_locked_versions_offline(tmp_path: Path, shared_cache: Path) -> None:
    """`lock` asks apt what the system step installs and records each .deb; `build` installs
    exactly those from a local repository, so a base with `network = false` still gets its
    system packages; `plan` names a system package that moved."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "layerforge.toml").write_text(SYSTEM)
    code, _out, err = cli("lock", "-f", str(root), "--cache-dir", str(shared_cache))
    assert code == 0, err[-3000:]
    text = (root / "layerforge.lock").read_text()
    lock = lockfile.loads(text)
    node = lock.nodes["base"]
    assert node.system_for == ("libgomp1",)
    gomp = next(r for r in node.system if r.name == "libgomp1")
    assert gomp.path.startswith("pool/main/g/gcc-12/") and len(gomp.sha256) == 64
    assert node.source is not None and "libgomp1" not in {r.name for r in node.source.os}
    build(root, shared_cache)
    status = status_in_layer(root, "base:latest")
    assert "Package: libgomp1\nStatus: install ok installed\n" in status
    assert f"Version: {gomp.version}\n" in status
    # the lock names another version now (as an --upgrade-os would): plan says which
    row = f'{{ name = "libgomp1", version = "{gomp.version}"'
    assert text.count(row) == 1
    moved = text.replace(row, '{ name = "libgomp1", version = "12.9.9-1"')
    (root / "layerforge.lock").write_text(moved)
    code, out, err = cli("plan", "-f", str(root), "--json")
    assert code == 0, err[-3000:]
    assert f"system changed: libgomp1 {gomp.version} -> 12.9.9-1" in out
    # a system spec added: the lock is stale until `lock` asks apt again
    (root / "layerforge.toml").write_text(SYSTEM.replace('["libgomp1"]', '["libgomp1", "zstd"]'))
    code, _out, err = cli("lock", "--check", "-f", str(root))
    assert code == 2 and "out of date for: base" in err
