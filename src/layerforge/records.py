"""The store's bookkeeping: build records, and where the store keeps its other JSON files.

Beside the OCI layout, a store holds ``layerforge/``: ``keys/<hex12>.json`` (the build record
of each image: what it was made from, see :func:`write_record`), ``layers/`` (the layer cache),
``dists/`` (one layer per large distribution), ``listings/`` (the listing of each layer) and
``contents/`` (the packages each layer holds, for SBOMs).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layerforge.fsutil import atomic_write
from layerforge.oci.layer import Layer
from layerforge.oci.layout import Descriptor, Store

KEY_ANNOTATION = "dev.layerforge.key"
NODE_ANNOTATION = "dev.layerforge.node"


def bookkeeping_dir(store_root: Path) -> Path:
    """``<store>/layerforge``: everything of the store that is not OCI layout."""
    return store_root / "layerforge"


def records_dir(store_root: Path) -> Path:
    """The build records, one per content key (``<hex12>.json``)."""
    return bookkeeping_dir(store_root) / "keys"


def layers_dir(store_root: Path) -> Path:
    """The layer cache: the layers remembered under a cache key."""
    return bookkeeping_dir(store_root) / "layers"


def dists_dir(store_root: Path) -> Path:
    """The distribution cache: one large distribution's own layer, by wheel."""
    return bookkeeping_dir(store_root) / "dists"


def listings_dir(store_root: Path) -> Path:
    """The cached listings of layer blobs, by digest."""
    return bookkeeping_dir(store_root) / "listings"


def contents_dir(store_root: Path) -> Path:
    """What each layer blob holds for SBOMs (dpkg status, Python distributions), by digest."""
    return bookkeeping_dir(store_root) / "contents"


@dataclass(frozen=True)
class PythonInfo:
    executable: str  # absolute path inside the image, e.g. /usr/bin/python3.11
    version: str  # MAJOR.MINOR


@dataclass(frozen=True)
class ImageRecord:
    """A built image as its children and the report see it."""

    node: str
    key: str
    manifest: Descriptor
    config: dict[str, Any]
    layers: tuple[Layer, ...]
    python: PythonInfo

    @property
    def env(self) -> list[str]:
        return list(self.config.get("config", {}).get("Env") or [])

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "key": self.key,
            "manifest": self.manifest.to_json(),
            "layers": [layer.to_json() for layer in self.layers],
            "python": {"executable": self.python.executable, "version": self.python.version},
        }


def write_record(store_root: Path, record: ImageRecord, inputs: dict[str, Any]) -> None:
    """What the plan compares against next time (see plan.load_previous)."""
    hex12 = record.key.split(":", 1)[1][:12]
    doc = {**record.to_json(), "inputs": inputs}
    atomic_write(
        records_dir(store_root) / f"{hex12}.json",
        json.dumps(doc, indent=2, sort_keys=True).encode(),
    )


def read_record(store: Store, ref: str) -> ImageRecord | None:
    """The image a ref points at, rebuilt from its manifest and config in the store."""
    desc = store.resolve(ref)
    if desc is None or not store.has_blob(desc.digest):
        return None
    manifest = store.read_json(desc.digest)
    key = str(manifest.get("annotations", {}).get(KEY_ANNOTATION, ""))
    path = records_dir(store.root) / f"{key.split(':', 1)[-1][:12]}.json"
    if not key or not path.is_file():
        return None
    data = json.loads(path.read_text())
    config = store.read_json(str(manifest["config"]["digest"]))
    return ImageRecord(
        node=str(data["node"]),
        key=key,
        manifest=desc,
        config=config,
        layers=tuple(Layer.from_json(x) for x in data["layers"]),
        python=PythonInfo(str(data["python"]["executable"]), str(data["python"]["version"])),
    )
