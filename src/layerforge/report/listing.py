"""What a layer holds: its tar listing, and which distribution each file belongs to.

A layer blob is read once (gzip through ISA-L, zstd, or plain tar), member headers only,
plus the ``*.dist-info/RECORD`` files, which say which files each installed distribution
owns. The result is cached next to the store's other bookkeeping
(``layerforge/listings/<hex>.json``): a blob never changes, so neither does its listing.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import posixpath
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layerforge.errors import StoreError
from layerforge.fsutil import atomic_write
from layerforge.oci.compress import open_layer
from layerforge.oci.layout import Store
from layerforge.records import listings_dir

LISTING_FORMAT = 1


@dataclass(frozen=True)
class FileEntry:
    """One tar member: ``kind`` is file, dir, symlink, hardlink or other."""

    path: str
    kind: str
    size: int = 0


@dataclass(frozen=True)
class DistUsage:
    """The bytes one installed distribution occupies in one layer."""

    name: str
    version: str
    size: int
    files: int


@dataclass(frozen=True)
class Listing:
    digest: str
    entries: tuple[FileEntry, ...]
    dists: tuple[DistUsage, ...]  # largest first

    @property
    def file_bytes(self) -> int:
        return sum(e.size for e in self.entries)

    def largest_files(self, count: int) -> list[FileEntry]:
        files = [e for e in self.entries if e.kind == "file"]
        return sorted(files, key=lambda e: (-e.size, e.path))[:count]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": LISTING_FORMAT,
            "digest": self.digest,
            "entries": [[e.path, e.kind, e.size] for e in self.entries],
            "dists": [[d.name, d.version, d.size, d.files] for d in self.dists],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Listing:
        return cls(
            str(data["digest"]),
            tuple(FileEntry(str(p), str(k), int(s)) for p, k, s in data["entries"]),
            tuple(DistUsage(str(n), str(v), int(s), int(f)) for n, v, s, f in data["dists"]),
        )


def _kind(member: tarfile.TarInfo) -> str:
    if member.isfile():
        return "file"
    if member.isdir():
        return "dir"
    if member.issym():
        return "symlink"
    if member.islnk():
        return "hardlink"
    return "other"


def _dist_of_record(path: str) -> tuple[str, str] | None:
    parent = posixpath.basename(posixpath.dirname(path))
    if not parent.endswith(".dist-info") or posixpath.basename(path) != "RECORD":
        return None
    name, _, version = parent[: -len(".dist-info")].partition("-")
    return name.replace("_", "-").lower(), version


def _record_paths(record_member: str, text: str) -> set[str]:
    site = posixpath.dirname(posixpath.dirname(record_member))
    out: set[str] = set()
    for row in csv.reader(io.StringIO(text)):
        if row:
            out.add(posixpath.normpath(posixpath.join(site, row[0])))
    return out


def read_listing(path: Path, digest: str) -> Listing:
    """Read a layer blob's listing (members in tar order) and attribute files to dists."""
    entries: list[FileEntry] = []
    records: dict[tuple[str, str], set[str]] = {}
    try:
        with open_layer(path) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                name = posixpath.normpath(member.name.lstrip("/")).removeprefix("./")
                entries.append(
                    FileEntry(name, _kind(member), member.size if member.isfile() else 0)
                )
                dist = _dist_of_record(name)
                handle = tar.extractfile(member) if dist and member.isfile() else None
                if dist is not None and handle is not None:
                    text = handle.read().decode("utf-8", "replace")
                    records[dist] = _record_paths(name, text)
    except (OSError, tarfile.TarError, EOFError) as exc:
        raise StoreError(
            f"layer {digest} in {path.parent} cannot be read as a tar: {exc}",
            hint="the store may be damaged; rebuild the image with `layerforge build`",
        ) from exc
    return Listing(digest, tuple(entries), _attribute(entries, records))


def _attribute(
    entries: list[FileEntry], records: dict[tuple[str, str], set[str]]
) -> tuple[DistUsage, ...]:
    sizes = {e.path: e.size for e in entries if e.kind == "file"}
    usage = []
    for (name, version), paths in records.items():
        owned = [sizes[p] for p in paths if p in sizes]
        usage.append(DistUsage(name, version, sum(owned), len(owned)))
    return tuple(sorted(usage, key=lambda d: (-d.size, d.name)))


def listing(store: Store, digest: str) -> Listing:
    """The cached listing of a layer in the store (read and cached on first use)."""
    cache = listings_dir(store.root) / f"{digest.split(':', 1)[1]}.json"
    if cache.is_file():
        try:
            data = json.loads(cache.read_text())
            if data.get("format") == LISTING_FORMAT:
                return Listing.from_json(data)
        except (OSError, ValueError, KeyError, TypeError):
            pass
    if not store.has_blob(digest):
        raise StoreError(
            f"layer {digest} is missing from {store.root}",
            hint="rebuild with `layerforge build`",
        )
    result = read_listing(store.blob_path(digest), digest)
    with contextlib.suppress(OSError):  # a read-only store is still reported on
        atomic_write(cache, json.dumps(result.to_json(), separators=(",", ":")).encode())
    return result
