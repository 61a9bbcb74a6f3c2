"""Layer compression, both ways: the encoders the layer writer feeds, and the one decoder.

Encoding: the calling thread only reads files and builds the tar stream, cut into fixed 4 MiB
chunks. A hasher thread computes the diff_id over the chunks in order. gzip is pigz-style:
each chunk is deflated on its own by a pool of threads (ISA-L, raw deflate ending in a sync
flush; the last one finished) and the pieces are written in order behind one gzip header,
with the combined CRC-32 and the size as trailer: one valid gzip member, byte-identical for
identical input since chunk boundaries are fixed. zstd: one compressor with its own worker
threads. sha256, ISA-L and zstd release the GIL, so both cores work; every queue is
bounded, so memory stays flat whatever the layer's size.

Decoding: :func:`open_layer` gives the tar stream of a layer blob (gzip through ISA-L, zstd,
or plain tar), for unpacking, listings and exports alike.
"""

from __future__ import annotations

import hashlib
import queue
import shutil
import struct
import threading
from collections import deque
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


class _ParallelGzip:
    def __init__(self, out: HashingOut, level: int, threads: int) -> None:
        from isal import isal_zlib  # noqa: PLC0415

        self._combine = isal_zlib.crc32_combine
        self.out = out
        self.level = level
        self.pool = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="lf-gz")
        self.inflight: deque[Future[tuple[bytes, int, int]]] = deque()
        self.limit = 2 * max(1, threads) + 1
        self.held: Chunk | None = None  # the newest chunk: only the last one may finish
        self.crc = 0
        self.total = 0
        out.write(GZIP_HEADER)

    def feed(self, chunk: Chunk) -> None:
        if self.held is not None:
            self._submit(self.held, last=False)
        self.held = chunk

    def _submit(self, chunk: Chunk, *, last: bool) -> None:
        self.inflight.append(self.pool.submit(_deflate_chunk, self.level, chunk, last))
        while len(self.inflight) >= self.limit:
            self._drain_one()

    def _drain_one(self) -> None:
        body, crc, length = self.inflight.popleft().result()
        self.out.write(body)
        self.crc = self._combine(self.crc, crc, length)
        self.total += length

    def close(self) -> None:
        if self.held is None:
            raise BuildError("internal error: a tar stream always has a last chunk")
        self._submit(self.held, last=True)
        self.held = None
        while self.inflight:
            self._drain_one()
        self.pool.shutdown()
        self.out.write(struct.pack("<II", self.crc & 0xFFFFFFFF, self.total & 0xFFFFFFFF))

    def abort(self) -> None:
        for future in self.inflight:
            future.cancel()
        self.pool.shutdown(wait=True)


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
