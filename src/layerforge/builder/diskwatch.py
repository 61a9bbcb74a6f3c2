"""Peak disk use of a build: sampled while it runs, per filesystem, and reported at the end.

A daemon thread reads ``shutil.disk_usage`` of every distinct filesystem holding the store,
the cache directory or uv's cache, every ``INTERVAL`` seconds (and once more at the end),
and keeps the used bytes at the start and the highest seen. The figure is the growth of the
whole filesystem, so other processes writing there show in it (``scope: filesystem``). At
the end it adds what the store holds (the sum of its blob sizes) and what the unpacked trees
take (the ``bytes`` of each ``meta.json`` under ``CACHE/layers`` and ``CACHE/roots``): no
tree is walked.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from layerforge import cachedir
from layerforge.sizes import format_size

INTERVAL = 0.25


@dataclass(frozen=True)
class FilesystemPeak:
    path: Path  # the first of the watched directories on this filesystem
    names: tuple[str, ...]  # which: store, cache, uv cache
    start_used: int
    peak_used: int

    @property
    def peak_growth(self) -> int:
        return max(0, self.peak_used - self.start_used)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "holds": list(self.names),
            "start_used": self.start_used,
            "peak_used": self.peak_used,
            "peak_growth": self.peak_growth,
        }


@dataclass(frozen=True)
class DiskFigures:
    filesystems: tuple[FilesystemPeak, ...]
    store_bytes: int
    unpacked_bytes: int

    def to_json(self) -> dict[str, Any]:
        return {
            "scope": "filesystem",
            "filesystems": [f.to_json() for f in self.filesystems],
            "store_bytes": self.store_bytes,
            "unpacked_bytes": self.unpacked_bytes,
        }

    def line(self) -> str:
        """``peak disk: +3.1 GB on / (store 1.2 GB, unpacked 1.5 GB)``."""
        peaks = "; ".join(
            f"+{format_size(f.peak_growth)} on {f.path} ({', '.join(f.names)})"
            for f in self.filesystems
        )
        return (
            f"peak disk: {peaks}; store {format_size(self.store_bytes)}, unpacked layers and "
            f"roots {format_size(self.unpacked_bytes)}"
        )


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


class DiskWatch:
    """``with DiskWatch({"store": s, "cache": c}, store=s, cache_dir=c) as w: ...``, then
    ``w.figures()``."""

    def __init__(self, places: dict[str, Path], *, store: Path, cache_dir: Path) -> None:
        self._store, self._cache_dir = store, cache_dir
        groups: dict[int, tuple[Path, list[str]]] = {}
        for name, path in places.items():
            where = _existing(path)
            device = os.stat(where).st_dev
            groups.setdefault(device, (where, []))[1].append(name)
        self._groups = list(groups.values())
        self._start = [self._used(p) for p, _ in self._groups]
        self._peak = list(self._start)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="diskwatch", daemon=True)

    @staticmethod
    def _used(path: Path) -> int:
        usage = shutil.disk_usage(path)
        return usage.total - usage.free

    def _sample(self) -> None:
        for i, (path, _) in enumerate(self._groups):
            try:
                self._peak[i] = max(self._peak[i], self._used(path))
            except OSError:
                continue

    def _run(self) -> None:
        while not self._stop.wait(INTERVAL):
            self._sample()

    def __enter__(self) -> DiskWatch:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def figures(self) -> DiskFigures:
        peaks = tuple(
            FilesystemPeak(path, tuple(names), start, peak)
            for (path, names), start, peak in zip(
                self._groups, self._start, self._peak, strict=True
            )
        )
        return DiskFigures(peaks, store_bytes(self._store), unpacked_bytes(self._cache_dir))


def store_bytes(store: Path) -> int:
    """The sum of the store's blob sizes."""
    total = 0
    blobs = store / "blobs" / "sha256"
    if blobs.is_dir():
        with os.scandir(blobs) as it:
            for entry in it:
                if entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
    return total


def unpacked_bytes(cache_dir: Path) -> int:
    """What the unpacked layer trees and roots take, from their ``meta.json``."""
    total = 0
    for area in cachedir.UNPACKED:
        directory = area.path(cache_dir)
        if not directory.is_dir():
            continue
        for child in directory.iterdir():
            try:
                total += int(json.loads((child / "meta.json").read_text()).get("bytes", 0))
            except (OSError, ValueError, TypeError, AttributeError):
                continue
    return total
