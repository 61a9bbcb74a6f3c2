"""Red team of the unpacker: a layer that replaces one of its own directories by a symlink
to a host path must not get that host path's mode, owner or times changed (the modes of
directories are set after their content, at the end of the layer)."""

from __future__ import annotations

import os
import stat
import tarfile
from pathlib import Path

import pytest

from layerforge.oci.unpack import apply_layer
from tests.unit.test_unpack import TAR, dir_, file, layer, member, symlink


@pytest.mark.parametrize("via", ["itself", "parent"])
def test_a_directory_replaced_by_a_symlink_later_in_the_layer_changes_nothing_outside(
    tmp_path: Path, via: str
) -> None:
    """``x/`` (mode 0777, later mtime) then ``x -> HOST`` in the same layer: the deferred
    chmod of ``x`` followed the symlink and made the host path world-writable. With
    ``via = parent``, ``x/y/`` is set at the end and ``x`` became the symlink: the host's
    ``HOST/y`` was changed the same way."""
    host = tmp_path / "host"
    host.mkdir()
    victim = host / "y" if via == "parent" else host
    victim.mkdir(exist_ok=True)
    victim.chmod(0o700)
    before = os.stat(victim)
    members = [dir_("x/", mode=0o777)]
    if via == "parent":
        members.append(member("x/y/", tarfile.DIRTYPE, mode=0o777, mtime=12345))
    members += [symlink("x", str(host)), file("z")]
    root = tmp_path / "rootfs"
    apply_layer(root, layer(tmp_path / "l.tar", *members), TAR)
    after = os.stat(victim)
    assert stat.S_IMODE(after.st_mode) == 0o700
    assert after.st_mtime_ns == before.st_mtime_ns
    assert os.readlink(root / "x") == str(host)
