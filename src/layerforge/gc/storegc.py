"""Garbage collection of the local store.

1. Per node, keep the ``keep`` most recent content-key tags (``NODE:lf-<12 hex>``, newest
   first by the time their build record was written; the key ``NODE:latest`` points at is
   always kept) and drop the older ones. Every other tag (``latest``, versions, commits) stays,
   except the SBOM tags (``NODE:sha256-<hex>``) of images no remaining tag reaches.
2. Mark every blob a remaining tag reaches (manifest or index, config, layers).
3. Remove every other blob, and the bookkeeping of what was removed (build records of the
   dropped keys, layer listings and contents, layer-cache and distribution-cache entries
   naming a removed blob).

All of it under the store lock held exclusively (:mod:`layerforge.oci.storelock`): gc waits
for the builds, pushes and verifies using the store to finish (the blobs a build has written
are not tagged yet), and they wait for gc. So the temporary files (``.tmp-*``) of blobs and of
``index.json`` that gc finds are leftovers of killed writers: gc removes them too.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layerforge.events import Event, NullReporter, Reporter
from layerforge.oci.artifact import is_fallback_tag
from layerforge.oci.layout import Descriptor, Store
from layerforge.records import contents_dir, dists_dir, layers_dir, listings_dir, records_dir

DEFAULT_KEEP = 3


@dataclass(frozen=True)
class GcResult:
    untagged: tuple[str, ...]
    removed: tuple[tuple[str, int], ...]  # (digest, size)
    kept: int  # blobs still reachable
    dry_run: bool
    leftovers: tuple[tuple[str, int], ...] = ()  # (path in the store, size): killed writes

    @property
    def freed(self) -> int:
        return sum(size for _, size in (*self.removed, *self.leftovers))

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "untagged": list(self.untagged),
            "removed": [{"digest": d, "size": s} for d, s in self.removed],
            "leftovers": [{"path": p, "size": s} for p, s in self.leftovers],
            "freed": self.freed,
            "kept": self.kept,
        }


def _key_tags(tags: dict[str, Descriptor]) -> dict[str, list[str]]:
    by_node: dict[str, list[str]] = {}
    for ref in tags:
        node, _, tag = ref.rpartition(":")
        if tag.startswith("lf-"):
            by_node.setdefault(node, []).append(ref)
    return by_node


def _age(store: Store, ref: str) -> float:
    record = records_dir(store.root) / f"{ref.rpartition(':lf-')[2]}.json"
    return record.stat().st_mtime if record.is_file() else 0.0


def stale_tags(store: Store, keep: int) -> list[str]:
    """Content-key tags beyond the ``keep`` newest of each node (never ``latest``'s key)."""
    tags = store.tags()
    out: list[str] = []
    for node, refs in _key_tags(tags).items():
        latest = tags.get(f"{node}:latest")
        ranked = sorted(refs, key=lambda r: (latest is not None and tags[r] == latest,
                                             _age(store, r), r), reverse=True)  # fmt: skip
        out += ranked[max(keep, 1 if latest is not None else 0) :]
    return sorted(out)


def documents(store: Store, roots: Iterable[Descriptor]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(digest, parsed JSON) of every index and manifest the roots reach, each once; blobs
    missing from the store are skipped."""
    seen: set[str] = set()
    todo = [d.digest for d in roots]
    while todo:
        digest = todo.pop()
        if digest in seen or not store.has_blob(digest):
            continue
        seen.add(digest)
        doc = store.read_json(digest)
        todo += [str(m["digest"]) for m in doc.get("manifests", [])]
        yield digest, doc


def reachable(store: Store, roots: list[Descriptor]) -> set[str]:
    """Every blob these manifest or index descriptors reach (layers are never parsed)."""
    seen: set[str] = set()
    for digest, doc in documents(store, roots):
        seen.add(digest)
        if isinstance(doc.get("config"), dict):
            seen.add(str(doc["config"]["digest"]))
            seen.update(str(x["digest"]) for x in doc.get("layers", []))
    return seen


def collect(
    store: Store,
    keep: int = DEFAULT_KEEP,
    *,
    dry_run: bool = False,
    timeout: float | None = None,
    reporter: Reporter | None = None,
) -> GcResult:
    """Drop old key tags, then every blob no tag reaches. ``dry_run``: change nothing.

    Waits (at most ``timeout`` seconds; None: as long as it takes) while a build, push or
    verify uses the store, saying so once through ``reporter``."""
    rep = reporter or NullReporter()
    message = f"waiting for the build, push or verify using {store.root} to finish"
    with store.exclusive(timeout=timeout, on_wait=lambda: rep.emit(Event("info", "gc", message))):
        return _collect(store, keep, dry_run=dry_run)


def orphan_referrer_tags(store: Store, dropped: list[str]) -> list[str]:
    """Tags ``NODE:sha256-<hex>`` (an image's SBOM, see layerforge.sbom) whose image no
    other remaining tag reaches: the artifact goes with its subject."""
    tags = store.tags()
    gone = set(dropped)
    images = [d for ref, d in tags.items() if ref not in gone and not _referrer_tag(ref)]
    live = {digest for digest, _ in documents(store, images)}
    return sorted(
        ref
        for ref in tags
        if ref not in gone
        and _referrer_tag(ref)
        and "sha256:" + ref.rpartition(":sha256-")[2] not in live
    )


def _referrer_tag(ref: str) -> bool:
    return is_fallback_tag(ref.rpartition(":")[2])


def _collect(store: Store, keep: int, *, dry_run: bool) -> GcResult:
    drop = stale_tags(store, keep)
    drop += orphan_referrer_tags(store, drop)
    remaining = [d for ref, d in store.tags().items() if ref not in set(drop)]
    live = reachable(store, remaining)
    removed = sorted(
        (digest, store.blob_path(digest).stat().st_size)
        for digest in store.blobs() - live
    )  # fmt: skip
    leftovers = _leftovers(store)
    if not dry_run:
        store.untag(drop)
        for digest, _ in removed:
            store.blob_path(digest).unlink(missing_ok=True)
        for path, _ in leftovers:
            (store.root / path).unlink(missing_ok=True)
        _forget(store, drop, {d for d, _ in removed})
    return GcResult(tuple(drop), tuple(removed), len(live), dry_run, tuple(leftovers))


def _leftovers(store: Store) -> list[tuple[str, int]]:
    """Temporary files (``.tmp-*``) of blobs and indexes whose writer was killed: under the
    exclusive store lock no writer is running, so every one of them is a leftover."""
    out: list[tuple[str, int]] = []
    for directory in (store.root, store.root / "blobs" / "sha256"):
        for path in sorted(directory.glob(".tmp-*")):
            with contextlib.suppress(OSError):
                if path.is_file() and not path.is_symlink():
                    out.append((str(path.relative_to(store.root)), path.stat().st_size))
    return out


def _forget(store: Store, dropped: list[str], removed: set[str]) -> None:
    keys = {ref.rpartition(":lf-")[2] for ref in dropped}
    still = {ref.rpartition(":lf-")[2] for ref in store.tags() if ":lf-" in ref}
    for hex12 in keys - still:
        (records_dir(store.root) / f"{hex12}.json").unlink(missing_ok=True)
    for digest in removed:
        for directory in (listings_dir(store.root), contents_dir(store.root)):
            (directory / f"{digest.split(':', 1)[1]}.json").unlink(missing_ok=True)
    # layer-cache entries: a node's layers, one distribution's
    for directory in (layers_dir(store.root), dists_dir(store.root)):
        for path in directory.glob("*.json") if directory.is_dir() else ():
            if _names_any(path, removed):
                path.unlink(missing_ok=True)


def _names_any(path: Path, digests: set[str]) -> bool:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    entries = [doc["layer"]] if isinstance(doc, dict) and "layer" in doc else doc
    return isinstance(entries, list) and any(
        isinstance(e, dict) and str(e.get("descriptor", {}).get("digest")) in digests
        for e in entries
    )
