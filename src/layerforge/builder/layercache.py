"""The layer cache of the executor: keys, the index of remembered layers, and writing a layer.

A group of layers (the venv skeleton, a system layer, a node's dependency layers) is
remembered under a key (:func:`cache_key`) in ``STORE/layerforge/layers/KEY.json``; the
blobs stay in the store, and an entry whose blobs are gone (``layerforge gc``) is a miss.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from layerforge.events import Event, Reporter
from layerforge.fsutil import atomic_write, digest_json
from layerforge.oci.layer import Layer
from layerforge.oci.layout import Store
from layerforge.oci.tarball import Entry
from layerforge.oci.write import Compression, write_layer_to_store
from layerforge.plan import LAYER_FORMAT
from layerforge.records import layers_dir


@dataclass(frozen=True)
class LayerSink:
    """Where layers go and the settings their bytes depend on (a build's
    :attr:`~layerforge.builder.context.BuildContext.layers`)."""

    store: Store
    reporter: Reporter
    compression: Compression
    epoch: int  # SOURCE_DATE_EPOCH: every entry's mtime


def cache_key(sink: LayerSink, what: dict[str, Any]) -> str:
    """A layer-cache key: ``what`` plus the settings every layer's bytes depend on."""
    doc = {
        "format": LAYER_FORMAT,
        "compression": sink.compression,
        "epoch": sink.epoch,
        **what,
    }
    return digest_json(doc).removeprefix("sha256:")[:32]


def cached_layers(sink: LayerSink, key: str) -> list[Layer] | None:
    """The layers remembered under ``key``, if all their blobs are still in the store."""
    path = layers_dir(sink.store.root) / f"{key}.json"
    if not path.is_file():
        return None
    layers = [Layer.from_json(x) for x in json.loads(path.read_text())]
    if all(sink.store.has_blob(layer.descriptor.digest) for layer in layers):
        return layers
    return None


def remember_layers(sink: LayerSink, key: str, layers: list[Layer]) -> None:
    path = layers_dir(sink.store.root) / f"{key}.json"
    atomic_write(path, json.dumps([x.to_json() for x in layers], indent=1).encode())


def write(
    sink: LayerSink, task: str, entries: list[Entry], created_by: str, *, parents: bool = True
) -> Layer:
    """Write one layer into the store, reporting progress and its timing under ``task``
    (``parents``: see :func:`layerforge.oci.tarball.normalize`)."""
    total = sum(e.size for e in entries)
    sink.reporter.emit(Event("start", task, created_by, total=total))
    started = time.perf_counter()
    blob = write_layer_to_store(
        sink.store,
        entries,
        compression=sink.compression,
        mtime=sink.epoch,
        progress=lambda n: sink.reporter.emit(Event("progress", task, done=n, total=total)),
        parents=parents,
    )
    seconds = time.perf_counter() - started
    data: dict[str, object] = {"ok": True, "bytes": blob.uncompressed_size, "seconds": seconds}
    data.update(digest=blob.digest, compressed=blob.size)
    sink.reporter.emit(Event("finish", task, data=data))
    return Layer.from_blob(blob, created_by)
