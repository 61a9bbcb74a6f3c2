"""Issue 12 item 2: the platform wheels are resolved for comes from the root base's C library.

A root filesystem directory whose ``libc.so.6`` (behind ``lib -> usr/lib``, as on Debian) is
glibc 2.36, and a find_links directory with two builds of one package: ``gl`` 1.0 only for
``manylinux_2_17`` and 2.0 only for ``manylinux_2_31``. A fixed ``manylinux_2_28`` (the
tag before this change) picks 1.0; the OS's glibc picks 2.0, and the lock says why. A base
with an older glibc than a locked wheel needs is refused by name before anything is built.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from layerforge.events import NullReporter
from layerforge.lock.lockfile import read
from layerforge.manifest.model import OSSource
from layerforge.sources.base import LibcInfo, find_libc
from layerforge.sources.debootstrap import debootstrap_rootfs
from tests.integration.tiny import cli
from tests.wheelkit import make_wheel

pytestmark = pytest.mark.integration

MANIFEST = """
[project]
name = "gl"
python = "3.11"
find_links = ["wheels"]

[bases.base]
from = "rootfs:os"
requirements = ["gl"]

[services.svc]
base = "base"
source = "svc"
command = ["python", "-m", "svc"]
"""


def glibc_bytes(minor: int) -> bytes:
    names = b"".join(b"GLIBC_2.%d\x00" % n for n in range(minor + 1))
    return b"\x7fELF" + b"\x00" * 64 + names + b"GLIBC_PRIVATE\x00"


def write_project(root: Path, glibc_minor: int) -> None:
    (root / "os/usr/bin").mkdir(parents=True)
    (root / "os/usr/bin/python3.11").write_text("#!/bin/sh\n")
    (root / "os/etc").mkdir()
    (root / "os/etc/os-release").write_text("ID=test\n")
    (root / "os/usr/lib/x86_64-linux-gnu").mkdir(parents=True)
    set_glibc(root, glibc_minor)
    (root / "os/lib").symlink_to("usr/lib")
    (root / "svc/svc").mkdir(parents=True)
    (root / "svc/svc/__main__.py").write_text("import gl\n")
    make_wheel(root / "wheels", "gl", "1.0", tag="cp311-cp311-manylinux_2_17_x86_64")
    make_wheel(root / "wheels", "gl", "2.0", tag="cp311-cp311-manylinux_2_31_x86_64")
    (root / "layerforge.toml").write_text(MANIFEST)


def set_glibc(root: Path, minor: int) -> None:
    (root / "os/usr/lib/x86_64-linux-gnu/libc.so.6").write_bytes(glibc_bytes(minor))


def test_lock_resolves_for_the_glibc_of_the_root_base(tmp_path: Path) -> None:
    write_project(tmp_path, 36)
    common = ["-f", str(tmp_path), "--cache-dir", str(tmp_path / "cache")]
    code, _, err = cli("lock", *common)
    assert code == 0, err
    lock = read(tmp_path / "layerforge.lock")
    assert [(p.name, p.version) for p in lock.nodes["base"].packages] == [("gl", "2.0")]
    source = lock.nodes["base"].source
    assert source is not None
    assert source.libc == "glibc 2.36"
    assert 'identity = "sha256:' in (tmp_path / "layerforge.lock").read_text()
    assert lock.platform == "x86_64-manylinux_2_28"  # the top-level default did not move
    code, _, err = cli("build", *common, "--no-verify")  # installs for manylinux_2_36 too
    assert code == 0, err

    # the root base downgraded to glibc 2.28 (another machine's checkout: a fresh store)
    set_glibc(tmp_path, 28)
    shutil.rmtree(tmp_path / ".layerforge")
    code, out, err = cli("build", *common, "--no-verify")
    assert code == 2, out + err
    assert "gl-2.0-cp311-cp311-manylinux_2_31_x86_64.whl needs glibc 2.31" in err
    assert "bases.base's OS source (rootfs:os) has glibc 2.28" in err
    assert "Traceback" not in err

    # locking again resolves for the older glibc
    code, _, err = cli("lock", *common)
    assert code == 0, err
    lock = read(tmp_path / "layerforge.lock")
    assert [(p.name, p.version) for p in lock.nodes["base"].packages] == [("gl", "1.0")]
    assert lock.nodes["base"].source is not None
    assert lock.nodes["base"].source.libc == "glibc 2.28"


def test_a_lock_older_than_libc_detection_is_stale(tmp_path: Path) -> None:
    write_project(tmp_path, 36)
    common = ["-f", str(tmp_path), "--cache-dir", str(tmp_path / "cache")]
    assert cli("lock", *common)[0] == 0
    path = tmp_path / "layerforge.lock"
    text = path.read_text()
    path.write_text(text.replace(', libc = "glibc 2.36"', ""))
    code, out, err = cli("lock", *common, "--check")
    assert code != 0, out + err
    assert "base" in out + err
    code, _, err = cli("build", *common, "--no-verify")
    assert code == 2
    assert "out of date for: base" in err
    assert "run `layerforge lock`" in err
    # a fresh store has no record to tell: the build finds out when it materializes the base
    shutil.copytree(tmp_path / ".layerforge", tmp_path / "kept")
    shutil.rmtree(tmp_path / ".layerforge")
    code, _, err = cli("build", *common, "--no-verify")
    assert code == 2
    assert "bases.base: layerforge.lock predates libc detection" in err
    assert "has glibc 2.36" in err
    assert "run `layerforge lock`" in err
    shutil.rmtree(tmp_path / ".layerforge")
    shutil.move(tmp_path / "kept", tmp_path / ".layerforge")
    # a source record written before libc detection: looked at again, once
    for record in (tmp_path / ".layerforge/layerforge/sources").glob("*.json"):
        raw = json.loads(record.read_text())
        del raw["libc"]
        record.write_text(json.dumps(raw))
    assert cli("lock", *common)[0] == 0
    assert path.read_text() == text


def test_the_cached_bookworm_root_has_glibc_2_36(shared_cache: Path) -> None:
    rootfs = debootstrap_rootfs(OSSource("debootstrap", "bookworm"), shared_cache, NullReporter())
    assert find_libc(rootfs) == LibcInfo("glibc", "2.36")


def test_an_image_source_reads_the_c_library_of_its_layers(
    fleet: Path, tmp_path: Path, shared_cache: Path
) -> None:
    """``oci:LAYOUT:TAG`` (and registry sources, through the same unpacked image): the C
    library is read from the image's unpacked layers, here the example fleet's bookworm."""
    layout = fleet / ".layerforge"
    (tmp_path / "layerforge.toml").write_text(
        '[project]\nname = "derived"\npython = "3.11"\n\n'
        f'[bases.base]\nfrom = "oci:{layout}:cpu:latest"\n'
    )
    code, _, err = cli("lock", "-f", str(tmp_path), "--cache-dir", str(shared_cache))
    assert code == 0, err
    source = read(tmp_path / "layerforge.lock").nodes["base"].source
    assert source is not None
    assert source.kind == "oci"
    assert source.libc == "glibc 2.36"
