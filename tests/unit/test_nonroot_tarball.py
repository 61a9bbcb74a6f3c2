"""Issue 14 item 2: layer entries carry an owner (uid/gid), default 0 with unchanged bytes."""

from __future__ import annotations

import hashlib
import io
import tarfile

from layerforge.oci.tarball import Entry, normalize, tar_chunks

# sha256 of the tar of ENTRIES at mtime 0, recorded on main before entries had an owner:
# the default owner must keep every existing layer's bytes.
PINNED = "sha256:ec974bc19f3f23d797e381d5f65ae10de652938a1a31f6f4d351a10409ef6e0d"


def _entries() -> list[Entry]:
    long = "d/" + "x" * 120  # through tarfile (a name longer than 100 bytes)
    return [
        Entry("etc", "dir", 0o755),
        Entry("etc/passwd", "file", 0o644, 5, data=b"root\n"),
        Entry("etc/shadow", "file", 0o640, 2, data=b"s\n"),
        Entry("usr/bin/passwd", "file", 0o4755, 1, data=b"x"),
        Entry("usr/bin/sh", "symlink", 0o777, linkname="dash"),
        Entry("usr/bin/x", "hardlink", 0o4755, linkname="usr/bin/passwd"),
        Entry(long, "file", 0o644, 3, data=b"abc"),
        Entry("caf\u00e9", "dir", 0o1777),
    ]


def _tar(entries: list[Entry], mtime: int = 0) -> bytes:
    out = bytearray()
    for chunk in tar_chunks(normalize(entries), mtime):
        out += chunk.view
        chunk.release()
        chunk.release()
    return bytes(out)


def test_owner_defaults_keep_header_bytes() -> None:
    data = _tar(_entries())
    assert "sha256:" + hashlib.sha256(data).hexdigest() == PINNED


def test_owner_is_written_for_each_entry() -> None:
    entries = [
        Entry("home", "dir", 0o755),
        Entry("home/app", "dir", 0o750, uid=10001, gid=10002),
        Entry("home/app/f", "file", 0o644, 1, data=b"x", uid=10001, gid=10001),
        Entry("home/app/" + "y" * 120, "file", 0o600, 0, data=b"", uid=7, gid=8),
        Entry("home/app/l", "symlink", 0o777, linkname="f", uid=10001, gid=10001),
    ]
    with tarfile.open(fileobj=io.BytesIO(_tar(entries))) as tar:
        owners = {m.name.rstrip("/"): (m.uid, m.gid, m.uname, m.gname) for m in tar}
    assert owners == {
        "home": (0, 0, "", ""),
        "home/app": (10001, 10002, "", ""),
        "home/app/f": (10001, 10001, "", ""),
        "home/app/" + "y" * 120: (7, 8, "", ""),
        "home/app/l": (10001, 10001, "", ""),
    }


def test_missing_parents_can_be_left_to_the_image() -> None:
    """A layer that adds a directory deep in the image (a user's home, a writable
    directory) must not reset the parents the image already has (/var/tmp is 1777)."""
    entries = [Entry("var/tmp/app", "dir", 0o755, uid=10001, gid=10001)]
    assert [e.path for e in normalize(entries, parents=False)] == ["var/tmp/app"]
    assert [e.path for e in normalize(entries)] == ["var", "var/tmp", "var/tmp/app"]
