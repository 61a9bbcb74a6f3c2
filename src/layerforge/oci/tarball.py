"""Deterministic layer tars: entries from a directory tree, normalized, cut into chunks.

Rules (image-spec layer.md plus reproducibility): entries sorted by path; uid/gid 0 unless an
entry names its owner (a non-root user's home and writable directories); empty
uname/gname; every mtime set to ``mtime`` (SOURCE_DATE_EPOCH semantics, default 0); PAX
headers; explicit parent directory entries (mode 0755); hardlinks point at the first path in
sorted order; symlinks kept as links; no absolute names and no ``..``.

The tar stream comes in fixed-size pooled chunks (:func:`tar_chunks`), which
:mod:`layerforge.oci.write` hands to a hasher and to a compressor of
:mod:`layerforge.oci.compress`.
"""

from __future__ import annotations

import os
import queue
import stat
import tarfile
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from layerforge.errors import BuildError

EntryKind = Literal["file", "dir", "symlink", "hardlink"]

CHUNK = 4 << 20  # pieces handed to the hasher and the compressors
BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE


@dataclass(frozen=True)
class Entry:
    path: str
    kind: EntryKind
    mode: int = 0o644
    size: int = 0
    source: Path | None = None
    data: bytes | None = None
    linkname: str = ""
    uid: int = 0  # owner; 0 (the default) writes exactly the bytes of an entry without one
    gid: int = 0


# -- entries ------------------------------------------------------------------------------------


def check_member(path: str) -> str:
    if not path or path.startswith("/") or "\\" in path:
        raise BuildError(f"layer member {path!r} is not a relative POSIX path")
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise BuildError(f"layer member {path!r} has an empty, '.' or '..' component")
    return path


def _join(prefix: str, rel: str) -> str:
    return f"{prefix}/{rel}" if prefix and rel else (prefix or rel)


def entries_from_tree(
    root: Path, prefix: str = "", *, exclude: Callable[[str], bool] | None = None
) -> list[Entry]:
    """Entries for everything below ``root``, named ``prefix/relpath``; symlinks not followed.

    Files sharing an inode become hardlinks to the first path in sorted order. Sockets,
    devices and fifos are skipped: they never belong in an image layer.
    """
    prefix = prefix.strip("/")
    found: list[tuple[str, os.stat_result, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/")
        kept = []
        for name in sorted(dirnames):
            rel = _join(rel_dir, name)
            if exclude is not None and exclude(rel):
                continue
            kept.append(name)
            full = Path(dirpath) / name
            found.append((rel, full.lstat(), full))
        dirnames[:] = kept
        for name in filenames:
            rel = _join(rel_dir, name)
            if exclude is None or not exclude(rel):
                full = Path(dirpath) / name
                found.append((rel, full.lstat(), full))
    found.sort(key=lambda item: item[0])
    entries: list[Entry] = []
    first_of: dict[tuple[int, int], str] = {}
    for rel, st, full in found:
        entry = _entry_for(_join(prefix, rel), st, full, first_of)
        if entry is not None:
            entries.append(entry)
    return entries


def _entry_for(
    member: str, st: os.stat_result, full: Path, first_of: dict[tuple[int, int], str]
) -> Entry | None:
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISDIR(st.st_mode):
        return Entry(member, "dir", mode)
    if stat.S_ISLNK(st.st_mode):
        return Entry(member, "symlink", 0o777, linkname=os.readlink(full))
    if not stat.S_ISREG(st.st_mode):
        return None
    if st.st_nlink > 1:
        ino = (st.st_dev, st.st_ino)
        if ino in first_of:
            return Entry(member, "hardlink", mode, linkname=first_of[ino])
        first_of[ino] = member
    return Entry(member, "file", mode, st.st_size, source=full)


def normalize(entries: Iterable[Entry], *, parents: bool = True) -> list[Entry]:
    """Sorted, checked, duplicates rejected, missing parent directories added (0755).

    ``parents=False``: missing parents are left out, for a layer that adds a few paths deep
    in an image whose own directories (``/var/tmp`` is 1777) it must not reset; an unpacker
    creates a parent the image lacks (0755, root)."""
    by_path: dict[str, Entry] = {}
    for entry in entries:
        check_member(entry.path)
        if entry.path in by_path:
            raise BuildError(f"layer member {entry.path!r} appears twice")
        by_path[entry.path] = entry
    for path in list(by_path) if parents else ():
        parts = path.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent not in by_path:
                by_path[parent] = Entry(parent, "dir", 0o755)
            elif by_path[parent].kind != "dir":
                raise BuildError(f"layer member {path!r} lies below non-directory {parent!r}")
    for entry in by_path.values():
        if entry.kind == "hardlink" and entry.linkname not in by_path:
            raise BuildError(f"hardlink {entry.path!r} points at missing {entry.linkname!r}")
    return [by_path[p] for p in sorted(by_path)]


# -- tar stream --------------------------------------------------------------------------------

_TYPES = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
}


def _tarfile_header(entry: Entry, mtime: int) -> bytes:
    info = tarfile.TarInfo(entry.path)
    info.type = _TYPES[entry.kind]
    info.mode = entry.mode & 0o7777
    info.mtime = mtime
    info.uid = entry.uid
    info.gid = entry.gid
    info.uname = info.gname = ""
    info.size = entry.size if entry.kind == "file" else 0
    info.linkname = entry.linkname
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


_MAX_OCTAL_11 = 8**11
_MAX_OCTAL_7 = 8**7  # uid/gid fields: larger owners go through tarfile (a PAX record)


def _octal(value: int, digits: int) -> bytes:
    return b"%0*o\0" % (digits - 1, value)


def _header(entry: Entry, mtime: int) -> bytes:
    """The tar header tarfile writes in PAX format, built directly for the common case
    (ASCII names of at most 100 bytes): tarfile spends ~50 us per entry, this ~5 us.
    Anything else (long or non-ASCII names, huge sizes) goes through tarfile itself."""
    name = entry.path + "/" if entry.kind == "dir" else entry.path
    size = entry.size if entry.kind == "file" else 0
    if (
        not (name.isascii() and entry.linkname.isascii())
        or len(name) > 100
        or len(entry.linkname) > 100
        or size >= _MAX_OCTAL_11
        or mtime >= _MAX_OCTAL_11
        or max(entry.uid, entry.gid) >= _MAX_OCTAL_7
    ):
        return _tarfile_header(entry, mtime)
    head = b"".join(
        (
            name.encode().ljust(100, b"\0"),
            _octal(entry.mode & 0o7777, 8),
            _octal(entry.uid, 8),
            _octal(entry.gid, 8),
            _octal(size, 12),
            _octal(mtime, 12),
            b"        ",
            _TYPES[entry.kind],
            entry.linkname.encode().ljust(100, b"\0"),
            b"ustar\x0000",
            b"\0" * 64,
            _octal(0, 8),
            _octal(0, 8),
        )
    )
    head = head.ljust(BLOCK, b"\0")
    checksum = b"%06o\0" % sum(head)
    return head[:148] + checksum + head[155:]


class Chunk:
    """A filled piece of the tar stream in a pooled buffer, returned to the pool once both the
    hasher and the encoder have called :meth:`release` (fresh 4 MiB buffers cost page faults
    that would take as long as compressing them)."""

    __slots__ = ("_buf", "_lock", "_pending", "_pool", "view")

    def __init__(self, buf: bytearray, length: int, pool: queue.Queue[bytearray]) -> None:
        self._buf = buf
        self.view = memoryview(buf)[:length]
        self._pool = pool
        self._pending = 2
        self._lock = threading.Lock()

    def release(self) -> None:
        with self._lock:
            self._pending -= 1
            if self._pending:
                return
        self.view.release()
        self._pool.put(self._buf)


class _Chunker:
    """Fills pooled fixed-size buffers with the tar stream; file content is read straight into
    them (``readinto`` on an unbuffered file: no intermediate copies)."""

    def __init__(self, size: int, buffers: int) -> None:
        self.size = size
        self.pool: queue.Queue[bytearray] = queue.Queue()
        for _ in range(buffers):
            self.pool.put(bytearray(size))
        self.total = 0
        self.buf: bytearray | None = None
        self.view: memoryview | None = None
        self.pos = 0

    def _current(self) -> memoryview:
        """The buffer being filled, taken from the pool only when there is data for it."""
        if self.view is None:
            self.buf = self.pool.get()
            self.view = memoryview(self.buf)
            self.pos = 0
        return self.view

    def _roll(self) -> Chunk:
        assert self.view is not None
        assert self.buf is not None
        self.view.release()
        chunk = Chunk(self.buf, self.pos, self.pool)
        self.buf = self.view = None
        return chunk

    def put(self, data: bytes) -> Iterator[Chunk]:
        """Copy ``data`` in, yielding each chunk as soon as it is full (a full chunk must
        reach the consumers before another buffer is waited for, or a large file would hold
        every buffer of the pool itself)."""
        offset = 0
        while offset < len(data):
            view = self._current()
            n = min(len(data) - offset, self.size - self.pos)
            view[self.pos : self.pos + n] = data[offset : offset + n]
            self.pos += n
            offset += n
            self.total += n
            if self.pos == self.size:
                yield self._roll()

    def put_file(self, entry: Entry) -> Iterator[Chunk]:
        if entry.data is not None:
            if len(entry.data) != entry.size:
                raise BuildError(
                    f"{entry.path}: inline data is {len(entry.data)} bytes, not {entry.size}"
                )
            yield from self.put(entry.data)
            return
        if entry.source is None:
            raise BuildError(f"{entry.path}: a file entry needs a source or data")
        remaining = entry.size
        with entry.source.open("rb", buffering=0) as fh:
            while remaining > 0:
                view = self._current()
                want = min(remaining, self.size - self.pos)
                n = fh.readinto(view[self.pos : self.pos + want])
                if not n:
                    raise BuildError(f"{entry.source} shrank while it was being written to a layer")
                self.pos += n
                self.total += n
                remaining -= n
                if self.pos == self.size:
                    yield self._roll()

    def finish(self) -> Chunk:
        self._current()
        return self._roll()


def tar_chunks(
    entries: list[Entry], mtime: int, size: int = CHUNK, buffers: int = 12
) -> Iterator[Chunk]:
    """The tar stream of normalized entries, in chunks of exactly ``size`` bytes (the last one
    shorter), ending with two zero blocks and padding to the tar record size. Each chunk must
    be released twice before its buffer is reused; at most ``buffers`` are alive at once."""
    chunker = _Chunker(size, buffers)
    for entry in entries:
        yield from chunker.put(_header(entry, mtime))
        if entry.kind == "file" and entry.size:
            yield from chunker.put_file(entry)
            pad = -entry.size % BLOCK
            if pad:
                yield from chunker.put(b"\0" * pad)
    end = 2 * BLOCK
    end += -(chunker.total + end) % RECORD
    yield from chunker.put(b"\0" * end)
    yield chunker.finish()
