"""Layer compression, both ways: the encoders the layer writer feeds, and the one decoder.

Encoding: the calling thread only reads files and builds the tar stream, cut into fixed 4 MiB
chunks. A hasher thread computes the diff_id over the chunks in order. gzip is pigz-style:
each chunk is deflated on its own by a pool of threads (ISA-L, raw deflate ending in a sync
flush; the last one finished) and a writer thread writes the pieces in order (hashing them:
the digest) behind one gzip header, with the combined CRC-32 and the size as trailer: one
valid gzip member, byte-identical for identical input since chunk boundaries are fixed. The
deflate pool is the process's own, as many threads as cores, shared by every layer written at
once (sibling nodes), so two layers do not run two pools each on the same cores. zstd: one
compressor with its own worker threads. sha256, ISA-L and zstd release the GIL, so both cores
work; every queue is bounded, so memory stays flat whatever the layer's size.

Decoding: :func:`open_layer` gives the tar stream of a layer blob (gzip through ISA-L, zstd,
or plain tar), for unpacking, listings and exports alike.
"""

from __future__ import annotations

import hashlib
import os
import queue
import shutil
import struct
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Protocol

from layerforge.errors import BuildError
from layerforge.oci import media
from layerforge.oci.tarball import Chunk

QUEUE_DEPTH = 4
DEFAULT_LEVEL: dict[str, int] = {"gzip": 1, "zstd": 3}
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class Writable(Protocol):
    def write(self, data: bytes, /) -> Any: ...


# -- encoding ----------------------------------------------------------------------------------

GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # no mtime, no name, OS unknown


class HashingOut:
    def __init__(self, out: Writable) -> None:
        self.out = out
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        if data:
            self.digest.update(data)
            self.size += len(data)
            self.out.write(data)


class Encoder(Protocol):
    def feed(self, chunk: Chunk) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...


def _deflate_chunk(level: int, chunk: Chunk, last: bool) -> tuple[bytes, int, int]:
    from isal import isal_zlib  # noqa: PLC0415

    try:
        compressor = isal_zlib.compressobj(level, isal_zlib.DEFLATED, -15)
        body: bytes = compressor.compress(chunk.view)
        body += compressor.flush(isal_zlib.Z_FINISH if last else isal_zlib.Z_SYNC_FLUSH)
        return body, isal_zlib.crc32(chunk.view), len(chunk.view)
    finally:
        chunk.release()


_POOL_LOCK = threading.Lock()
_POOLS: list[ThreadPoolExecutor] = []  # the one deflate pool, made on first use


def deflate_pool() -> ThreadPoolExecutor:
    """The process's pool of deflate threads: one per core (at least two), shared by every
    gzip layer being written. Deflating a chunk waits on nothing, so sharing cannot deadlock."""
    with _POOL_LOCK:
        if not _POOLS:
            cores = max(2, os.cpu_count() or 2)
            _POOLS.append(ThreadPoolExecutor(max_workers=cores, thread_name_prefix="lf-gz"))
        return _POOLS[0]


class _ParallelGzip:
    """pigz-style gzip: ``threads`` chunks of this layer at most are deflated at once on the
    shared pool (plus as many finished ones waiting to be written); a writer thread takes
    them in order, writes and hashes them, and combines their CRCs."""

    def __init__(self, out: HashingOut, level: int, threads: int) -> None:
        from isal import isal_zlib  # noqa: PLC0415

        self._combine = isal_zlib.crc32_combine
        self.out = out
        self.level = level
        self.pool = deflate_pool()
        # deflated or deflating, not yet written; put() blocks the producer when full
        self.inflight: queue.Queue[Future[tuple[bytes, int, int]] | None] = queue.Queue(
            2 * max(1, threads) + 1
        )
        self.held: Chunk | None = None  # the newest chunk: only the last one may finish
        self.crc = 0
        self.total = 0
        self.error: BaseException | None = None
        self.aborted = False
        self.writer = threading.Thread(target=self._write_all, name="lf-gz-out", daemon=True)
        self.writer.start()

    def feed(self, chunk: Chunk) -> None:
        if self.held is not None:
            self._submit(self.held, last=False)
        self.held = chunk

    def _submit(self, chunk: Chunk, *, last: bool) -> None:
        if self.error is not None:
            chunk.release()
            raise self.error
        self.inflight.put(self.pool.submit(_deflate_chunk, self.level, chunk, last))

    def _write_all(self) -> None:
        """The writer thread: header, each deflated chunk in order, trailer."""
        try:
            self.out.write(GZIP_HEADER)
        except BaseException as exc:
            self.error = exc
        while (future := self.inflight.get()) is not None:
            if self.error is not None or self.aborted:
                future.cancel()  # a chunk not deflated is not written: the layer is dropped
                continue
            try:
                body, crc, length = future.result()
                self.out.write(body)
                self.crc = self._combine(self.crc, crc, length)
                self.total += length
            except BaseException as exc:  # handed to the producer, re-raised there
                self.error = exc
        if self.error is None and not self.aborted:
            trailer = struct.pack("<II", self.crc & 0xFFFFFFFF, self.total & 0xFFFFFFFF)
            try:
                self.out.write(trailer)
            except BaseException as exc:
                self.error = exc

    def close(self) -> None:
        if self.held is None:
            raise BuildError("internal error: a tar stream always has a last chunk")
        self._submit(self.held, last=True)
        self.held = None
        self.inflight.put(None)
        self.writer.join()
        if self.error is not None:
            raise self.error

    def abort(self) -> None:
        self.aborted = True
        if self.writer.is_alive():
            self.inflight.put(None)
            self.writer.join()


class Worker:
    """A thread applying ``func`` to chunks in order (then releasing them), fed through a
    bounded queue."""

    def __init__(self, func: Callable[[memoryview], object], name: str) -> None:
        self.func = func
        self.error: BaseException | None = None
        self.queue: queue.Queue[Chunk | None] = queue.Queue(QUEUE_DEPTH)
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while (chunk := self.queue.get()) is not None:
                try:
                    self.func(chunk.view)
                finally:
                    chunk.release()
        except BaseException as exc:  # handed to the producer, re-raised there
            self.error = exc
            while (rest := self.queue.get()) is not None:
                rest.release()

    def put(self, chunk: Chunk) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(chunk)

    def join(self) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error


class _ThreadedZstd:
    def __init__(self, out: HashingOut, level: int, threads: int) -> None:
        import zstandard  # noqa: PLC0415

        cctx = zstandard.ZstdCompressor(level=level, threads=max(1, threads), write_checksum=True)
        self.compressor = cctx.compressobj()
        self.out = out
        self.worker = Worker(lambda chunk: out.write(self.compressor.compress(chunk)), "lf-zstd")

    def feed(self, chunk: Chunk) -> None:
        self.worker.put(chunk)

    def close(self) -> None:
        self.worker.join()
        self.out.write(self.compressor.flush())

    def abort(self) -> None:
        self.worker.queue.put(None)
        self.worker.thread.join()


ENCODERS: dict[str, tuple[Callable[[HashingOut, int, int], Encoder], str]] = {
    "gzip": (_ParallelGzip, media.OCI_LAYER_GZIP),
    "zstd": (_ThreadedZstd, media.OCI_LAYER_ZSTD),
}


# -- decoding ----------------------------------------------------------------------------------


def compression_of(media_type: str) -> str | None:
    """``gzip``, ``zstd`` or None (a plain tar), as a layer's media type says."""
    if media_type.endswith(("gzip", "tar.gzip")) or media_type == media.DOCKER_LAYER_GZIP:
        return "gzip"
    if media_type.endswith("zstd"):
        return "zstd"
    return None


def _sniff(raw: IO[bytes]) -> str | None:
    magic = raw.read(4)
    raw.seek(0)
    if magic.startswith(GZIP_MAGIC):
        return "gzip"
    return "zstd" if magic == ZSTD_MAGIC else None


@contextmanager
def open_layer(path: Path, media_type: str | None = None) -> Iterator[IO[bytes]]:
    """The uncompressed tar stream of a layer blob: decoded as ``media_type`` says, or, without
    one, as the blob's first bytes say (gzip, zstd, else a plain tar)."""
    with path.open("rb") as raw:
        kind = _sniff(raw) if media_type is None else compression_of(media_type)
        if kind == "gzip":
            from isal import igzip  # noqa: PLC0415

            stream: IO[bytes] = igzip.IGzipFile(fileobj=raw, mode="rb")  # type: ignore[no-untyped-call,assignment]
            with stream:
                yield stream
        elif kind == "zstd":
            import zstandard  # noqa: PLC0415

            with zstandard.ZstdDecompressor().stream_reader(raw) as zstream:
                yield zstream
        else:
            yield raw


def transcode_to_gzip(source: Path, media_type: str, target: Path) -> None:
    """Write the tar of a layer blob to ``target`` as gzip (level 1, no mtime)."""
    from isal import igzip  # noqa: PLC0415

    with (
        open_layer(source, media_type) as stream,
        target.open("wb") as sink,
        igzip.IGzipFile(fileobj=sink, mode="wb", compresslevel=1, mtime=0) as out,  # type: ignore[no-untyped-call]
    ):
        shutil.copyfileobj(stream, out, 1 << 20)
