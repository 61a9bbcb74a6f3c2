"""Deterministic layer tars, hashed and compressed in one streaming pass.

Rules (image-spec layer.md plus reproducibility): entries sorted by path; uid/gid 0; empty
uname/gname; every mtime set to ``mtime`` (SOURCE_DATE_EPOCH semantics, default 0); PAX
headers; explicit parent directory entries (mode 0755); hardlinks point at the first path in
sorted order; symlinks kept as links; no absolute names and no ``..``.

Speed: the tar stream is produced and hashed (diff_id) in the calling thread while a second
thread compresses it (ISA-L gzip or zstd), hashes the compressed bytes (digest) and writes
them. Both hashlib and the compressors release the GIL on large buffers, so the two cores
work at once; the queue between them is bounded, so memory stays flat for any layer size.
"""

from __future__ import annotations

import hashlib
import os
import queue
import stat
import struct
import tarfile
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from layerforge.errors import BuildError
from layerforge.oci import media
from layerforge.oci.layout import Store

EntryKind = Literal["file", "dir", "symlink", "hardlink"]
Compression = Literal["gzip", "zstd"]

CHUNK = 1 << 20
BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE
QUEUE_DEPTH = 8
PROGRESS_EVERY = 8 << 20
DEFAULT_LEVEL: dict[str, int] = {"gzip": 1, "zstd": 3}


class Writable(Protocol):
    def write(self, data: bytes, /) -> Any: ...


@dataclass(frozen=True)
class Entry:
    path: str
    kind: EntryKind
    mode: int = 0o644
    size: int = 0
    source: Path | None = None
    data: bytes | None = None
    linkname: str = ""


@dataclass(frozen=True)
class LayerBlob:
    digest: str
    diff_id: str
    size: int
    uncompressed_size: int
    media_type: str


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


def normalize(entries: Iterable[Entry]) -> list[Entry]:
    """Sorted, checked, duplicates rejected, missing parent directories added (0755)."""
    by_path: dict[str, Entry] = {}
    for entry in entries:
        check_member(entry.path)
        if entry.path in by_path:
            raise BuildError(f"layer member {entry.path!r} appears twice")
        by_path[entry.path] = entry
    for path in list(by_path):
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


def _header(entry: Entry, mtime: int) -> bytes:
    info = tarfile.TarInfo(entry.path)
    info.type = _TYPES[entry.kind]
    info.mode = entry.mode & 0o7777
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.size = entry.size if entry.kind == "file" else 0
    info.linkname = entry.linkname
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _file_chunks(entry: Entry) -> Iterator[bytes]:
    if entry.data is not None:
        if len(entry.data) != entry.size:
            raise BuildError(
                f"{entry.path}: inline data is {len(entry.data)} bytes, not {entry.size}"
            )
        yield entry.data
        return
    if entry.source is None:
        raise BuildError(f"{entry.path}: a file entry needs a source or data")
    remaining = entry.size
    with entry.source.open("rb") as fh:
        while remaining > 0:
            chunk = fh.read(min(CHUNK, remaining))
            if not chunk:
                raise BuildError(f"{entry.source} shrank while it was being written to a layer")
            remaining -= len(chunk)
            yield chunk


def tar_stream(entries: list[Entry], mtime: int) -> Iterator[bytes]:
    """The tar bytes of already-normalized entries, in pieces."""
    total = 0
    for entry in entries:
        header = _header(entry, mtime)
        total += len(header)
        yield header
        if entry.kind == "file" and entry.size:
            yield from _file_chunks(entry)
            pad = -entry.size % BLOCK
            total += entry.size + pad
            if pad:
                yield b"\0" * pad
    end = 2 * BLOCK
    end += -(total + end) % RECORD
    yield b"\0" * end


# -- compression -------------------------------------------------------------------------------
#
# gzip: pigz-style. The tar stream is cut into fixed 4 MiB chunks; each chunk is deflated on
# its own (ISA-L, raw deflate ending in a sync flush, the last one finished) by a pool of
# threads, and the pieces are concatenated behind one gzip header, with the CRC-32 and size
# of the whole stream as trailer. One valid gzip member, byte-identical for identical input
# (chunk boundaries are fixed), and both cores compress at once: ISA-L releases the GIL.
#
# zstd: one zstandard compressor with its own worker threads, fed from a bounded queue.

GZIP_CHUNK = 4 << 20
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # no mtime, no name, OS unknown


class _Encoder(Protocol):
    """Takes the tar stream in order; writes compressed bytes (hashing them) to ``out``."""

    def feed(self, data: bytes) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...


class _HashingOut:
    def __init__(self, out: Writable) -> None:
        self.out = out
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        if data:
            self.digest.update(data)
            self.size += len(data)
            self.out.write(data)


def _deflate_chunk(level: int, chunk: bytes, last: bool) -> bytes:
    from isal import isal_zlib  # noqa: PLC0415

    compressor = isal_zlib.compressobj(level, isal_zlib.DEFLATED, -15)
    body: bytes = compressor.compress(chunk)
    mode = isal_zlib.Z_FINISH if last else isal_zlib.Z_SYNC_FLUSH
    return body + compressor.flush(mode)


class _ParallelGzip:
    def __init__(self, out: _HashingOut, level: int, threads: int) -> None:
        from isal import isal_zlib  # noqa: PLC0415

        self._crc32 = isal_zlib.crc32
        self.out = out
        self.level = level
        self.pool = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="lf-gz")
        self.inflight: deque[Future[bytes]] = deque()
        self.limit = max(2, 2 * threads)
        self.buffer = bytearray()
        self.crc = 0
        self.total = 0
        out.write(GZIP_HEADER)

    def feed(self, data: bytes) -> None:
        self.crc = self._crc32(data, self.crc)
        self.total += len(data)
        self.buffer += data
        while len(self.buffer) > GZIP_CHUNK:  # keep one chunk back: the last must finish
            chunk = bytes(self.buffer[:GZIP_CHUNK])
            del self.buffer[:GZIP_CHUNK]
            self._submit(chunk, last=False)

    def _submit(self, chunk: bytes, *, last: bool) -> None:
        self.inflight.append(self.pool.submit(_deflate_chunk, self.level, chunk, last))
        while len(self.inflight) >= self.limit:
            self.out.write(self.inflight.popleft().result())

    def close(self) -> None:
        self._submit(bytes(self.buffer), last=True)
        self.buffer.clear()
        while self.inflight:
            self.out.write(self.inflight.popleft().result())
        self.pool.shutdown()
        self.out.write(struct.pack("<II", self.crc & 0xFFFFFFFF, self.total & 0xFFFFFFFF))

    def abort(self) -> None:
        for future in self.inflight:
            future.cancel()
        self.pool.shutdown(wait=True)


class _ThreadedZstd:
    def __init__(self, out: _HashingOut, level: int, threads: int) -> None:
        import zstandard  # noqa: PLC0415

        cctx = zstandard.ZstdCompressor(level=level, threads=max(1, threads), write_checksum=True)
        self.compressor = cctx.compressobj()
        self.out = out
        self.error: BaseException | None = None
        self.queue: queue.Queue[bytes | None] = queue.Queue(QUEUE_DEPTH)
        self.thread = threading.Thread(target=self._run, name="lf-zstd", daemon=True)
        self.pending = bytearray()
        self.thread.start()

    def _run(self) -> None:
        try:
            while (chunk := self.queue.get()) is not None:
                self.out.write(self.compressor.compress(chunk))
            self.out.write(self.compressor.flush())
        except BaseException as exc:  # handed to the producer, re-raised there
            self.error = exc
            while self.queue.get() is not None:
                pass

    def feed(self, data: bytes) -> None:
        if self.error is not None:
            raise self.error
        self.pending += data
        if len(self.pending) >= CHUNK:
            self.queue.put(bytes(self.pending))
            self.pending.clear()

    def close(self) -> None:
        if self.pending:
            self.queue.put(bytes(self.pending))
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error

    def abort(self) -> None:
        self.queue.put(None)
        self.thread.join()


ENCODERS: dict[str, tuple[Callable[[_HashingOut, int, int], _Encoder], str]] = {
    "gzip": (_ParallelGzip, media.OCI_LAYER_GZIP),
    "zstd": (_ThreadedZstd, media.OCI_LAYER_ZSTD),
}


def write_layer(
    entries: Iterable[Entry],
    out: Writable,
    *,
    compression: Compression = "gzip",
    level: int | None = None,
    mtime: int = 0,
    threads: int = 2,
    progress: Callable[[int], None] | None = None,
) -> LayerBlob:
    """Write the compressed layer to ``out``; return its digests and sizes (one pass)."""
    factory, media_type = ENCODERS[compression]
    sink = _HashingOut(out)
    ordered = normalize(entries)
    encoder = factory(sink, DEFAULT_LEVEL[compression] if level is None else level, threads)
    diff = hashlib.sha256()
    written = reported = 0
    try:
        for piece in tar_stream(ordered, mtime):
            diff.update(piece)
            written += len(piece)
            encoder.feed(piece)
            if progress is not None and written - reported >= PROGRESS_EVERY:
                progress(written)
                reported = written
        encoder.close()
    except BaseException:
        encoder.abort()
        raise
    if progress is not None:
        progress(written)
    return LayerBlob(
        digest="sha256:" + sink.digest.hexdigest(),
        diff_id="sha256:" + diff.hexdigest(),
        size=sink.size,
        uncompressed_size=written,
        media_type=media_type,
    )


def write_layer_to_store(
    store: Store,
    entries: Iterable[Entry],
    *,
    compression: Compression = "gzip",
    level: int | None = None,
    mtime: int = 0,
    threads: int = 2,
    progress: Callable[[int], None] | None = None,
) -> LayerBlob:
    """Write a layer into the store atomically (temp file, verified, renamed)."""
    with store.ingest() as writer:
        blob = write_layer(
            entries,
            writer,
            compression=compression,
            level=level,
            mtime=mtime,
            threads=threads,
            progress=progress,
        )
        writer.commit(blob.digest)
    return blob
