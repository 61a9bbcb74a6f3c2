"""Issue 13 item 7: both cores on one layer, and no more deflate threads than cores.

The gzip writer deflates fixed 4 MiB chunks on a pool and joins them into one member (so the
bytes do not depend on how many threads deflate them). Layers written at once share one pool
of deflate threads, as many as the machine has cores (two sibling nodes no longer run two
pools each), and the compressed bytes are hashed and written by a thread of their own, not by
the thread that builds the tar stream.
"""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

from layerforge.oci.tarball import CHUNK, Entry
from layerforge.oci.write import write_layer


def _entries(tmp_path: Path) -> list[Entry]:
    """About 4 chunks: random (incompressible) and repeated (compressible) bytes."""
    out: list[Entry] = []
    for i in range(2):
        path = tmp_path / f"f{i}.bin"
        path.write_bytes(os.urandom(CHUNK) + bytes([i]) * CHUNK)
        out.append(Entry(path.name, "file", 0o644, path.stat().st_size, source=path))
    return out


def _digest(entries: list[Entry], threads: int) -> str:
    return write_layer(entries, io.BytesIO(), threads=threads).digest


def test_digest_independent_of_threads_and_concurrency(tmp_path: Path) -> None:
    entries = _entries(tmp_path)
    single = _digest(entries, 1)
    assert _digest(entries, 2) == single
    assert _digest(entries, 4) == single
    found: list[str] = []
    writers = [threading.Thread(target=lambda: found.append(_digest(entries, 4))) for _ in range(3)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    assert found == [single] * 3


class _Out:
    """An output that notes which threads write to it, and how many deflate threads exist."""

    def __init__(self) -> None:
        self.writers: set[str] = set()
        self.deflaters = 0
        self.data = io.BytesIO()
        self._lock = threading.Lock()

    def write(self, data: bytes) -> int:
        with self._lock:
            self.writers.add(threading.current_thread().name)
            alive = [t for t in threading.enumerate() if t.name.startswith("lf-gz_")]
            self.deflaters = max(self.deflaters, len(alive))
        return self.data.write(data)


def test_layers_written_at_once_share_one_pool_and_write_off_the_producer(
    tmp_path: Path,
) -> None:
    entries = _entries(tmp_path)
    outs = [_Out(), _Out()]
    producers = [
        threading.Thread(
            target=write_layer, args=(entries, out), kwargs={"threads": 4}, name=f"producer-{i}"
        )
        for i, out in enumerate(outs)
    ]
    for producer in producers:
        producer.start()
    for producer in producers:
        producer.join()
    assert outs[0].data.getvalue() == outs[1].data.getvalue()
    for i, out in enumerate(outs):
        assert out.writers and f"producer-{i}" not in out.writers, out.writers
        assert out.deflaters <= max(2, os.cpu_count() or 2), out.deflaters
