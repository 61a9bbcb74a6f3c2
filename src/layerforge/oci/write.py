"""Entries to a layer blob in one streaming pass: tar, diff_id, compression and digest.

Speed: the tar stream is produced and hashed (diff_id) in the calling thread while a second
thread compresses it (ISA-L gzip or zstd), hashes the compressed bytes (digest) and writes
them. Both hashlib and the compressors release the GIL on large buffers, so the two cores
work at once; the queue between them is bounded, so memory stays flat for any layer size.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from layerforge import proc
from layerforge.oci.compress import DEFAULT_LEVEL, ENCODERS, HashingOut, Worker, Writable
from layerforge.oci.layout import Store
from layerforge.oci.tarball import Entry, normalize, tar_chunks

Compression = Literal["gzip", "zstd"]

PROGRESS_EVERY = 8 << 20


@dataclass(frozen=True)
class LayerBlob:
    digest: str
    diff_id: str
    size: int
    uncompressed_size: int
    media_type: str


def write_layer(
    entries: Iterable[Entry],
    out: Writable,
    *,
    compression: Compression = "gzip",
    level: int | None = None,
    mtime: int = 0,
    threads: int = 2,
    progress: Callable[[int], None] | None = None,
    parents: bool = True,
) -> LayerBlob:
    """Write the compressed layer to ``out``; return its digests and sizes (one pass).
    ``parents``: add missing parent directories (see :func:`normalize`)."""
    factory, media_type = ENCODERS[compression]
    ordered = normalize(entries, parents=parents)
    sink = HashingOut(out)
    encoder = factory(sink, DEFAULT_LEVEL[compression] if level is None else level, threads)
    diff = hashlib.sha256()
    hasher = Worker(diff.update, "lf-hash")
    written = reported = 0
    try:
        for chunk in tar_chunks(ordered, mtime):
            proc.check_stop()  # Ctrl-C: a worker thread stops at the next 4 MiB
            written += len(chunk.view)
            hasher.put(chunk)
            encoder.feed(chunk)
            if progress is not None and written - reported >= PROGRESS_EVERY:
                progress(written)
                reported = written
        hasher.join()
        encoder.close()
    except BaseException:
        hasher.queue.put(None)
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
    parents: bool = True,
) -> LayerBlob:
    """Write a layer into the store atomically (temp file, renamed under its digest). The
    layer writer hashes the compressed bytes it writes, so the store's writer does not."""
    with store.ingest(hashed=False) as writer:
        blob = write_layer(
            entries,
            writer,
            compression=compression,
            level=level,
            mtime=mtime,
            threads=threads,
            progress=progress,
            parents=parents,
        )
        writer.commit(blob.digest)
    return blob
