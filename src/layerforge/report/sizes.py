"""Per image: sizes, layers and what each holds, inherited vs own bytes, waste.

Sizes come from the store: a layer's compressed size is its descriptor's size (the blob),
its uncompressed size the build record's (the tar). An image's *size* is what a fresh node
pulls: its layers, config and manifest blobs. Its *uncompressed* size is the sum of its
layer tars, what ``docker images`` shows and what ``max_size`` budgets.
"""

from __future__ import annotations

import posixpath
from collections import Counter
from dataclasses import dataclass
from typing import Any

from layerforge.manifest import Project
from layerforge.oci.layout import Store
from layerforge.records import ImageRecord, read_record
from layerforge.report.listing import Listing, listing
from layerforge.report.waste import Waste, waste
from layerforge.sizes import format_size

HELD_ITEMS = 5


@dataclass(frozen=True)
class Held:
    """Something a layer holds: a distribution, a file or a directory, and its bytes."""

    label: str
    size: int


@dataclass(frozen=True)
class LayerReport:
    digest: str
    size: int  # compressed (the blob)
    uncompressed: int  # the tar
    created_by: str
    kind: str  # os | venv | system | deps | app | other
    owner: str  # the node that added it
    inherited: bool
    holds: tuple[Held, ...]
    files: int


@dataclass(frozen=True)
class ImageReport:
    node: str
    kind: str  # base | service
    parent: str | None
    key: str
    manifest: str
    manifest_size: int
    config: str
    config_size: int
    layers: tuple[LayerReport, ...]
    max_size: int | None
    waste: Waste

    @property
    def size(self) -> int:
        """Bytes a fresh node pulls: layers, config and manifest."""
        return self.manifest_size + self.config_size + sum(x.size for x in self.layers)

    @property
    def uncompressed(self) -> int:
        return sum(x.uncompressed for x in self.layers)

    @property
    def inherited(self) -> int:
        return sum(x.size for x in self.layers if x.inherited)

    @property
    def own(self) -> int:
        return sum(x.size for x in self.layers if not x.inherited)

    @property
    def over_budget(self) -> bool:
        return self.max_size is not None and self.uncompressed > self.max_size

    def blobs(self) -> dict[str, int]:
        """digest -> size of every blob this image is made of."""
        out = {x.digest: x.size for x in self.layers}
        out[self.manifest] = self.manifest_size
        out[self.config] = self.config_size
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "kind": self.kind,
            "parent": self.parent,
            "key": self.key,
            "manifest": self.manifest,
            "size": self.size,
            "uncompressed_size": self.uncompressed,
            "inherited": self.inherited,
            "own": self.own,
            "max_size": self.max_size,
            "over_budget": self.over_budget,
            "waste": {
                "bytes": self.waste.total,
                "files": [
                    {"path": i.path, "size": i.size, "how": i.how, "layer": i.upper}
                    for i in self.waste.items[:20]
                ],
            },
            "layers": [_layer_json(x) for x in self.layers],
        }


def _layer_json(x: LayerReport) -> dict[str, Any]:
    return {
        "digest": x.digest,
        "size": x.size,
        "uncompressed_size": x.uncompressed,
        "created_by": x.created_by,
        "kind": x.kind,
        "owner": x.owner,
        "inherited": x.inherited,
        "files": x.files,
        "holds": [{"label": h.label, "size": h.size} for h in x.holds],
    }


def layer_kind(created_by: str) -> str:
    for prefix, kind in (
        ("layerforge: pip", "deps"),
        ("layerforge: COPY", "app"),
        ("layerforge: venv", "venv"),
        ("layerforge: OS", "os"),
        ("layerforge: system", "system"),
        ("layerforge: runtime", "runtime"),  # runtime groups: pins and launcher (not wheels)
    ):
        if created_by.startswith(prefix):
            return kind
    return "other"


def holds(kind: str, entries: Listing, count: int = HELD_ITEMS) -> tuple[Held, ...]:
    """What a layer holds: distributions (deps), files (app, venv) or directories."""
    if kind == "deps" and entries.dists:
        return tuple(Held(f"{d.name} {d.version}", d.size) for d in entries.dists[:count])
    if kind in ("app", "venv"):
        return tuple(Held(e.path, e.size) for e in entries.largest_files(count))
    dirs: Counter[str] = Counter()
    for e in entries.entries:
        parts = e.path.split("/")
        dirs[posixpath.join(*parts[:2]) if len(parts) > 2 else parts[0]] += e.size
    ranked = sorted(dirs.items(), key=lambda kv: (-kv[1], kv[0]))[:count]
    return tuple(Held(d + "/", size) for d, size in ranked if size)


def load_records(store: Store, project: Project) -> dict[str, ImageRecord]:
    """The ``latest`` image of every node the store holds, in project order."""
    out: dict[str, ImageRecord] = {}
    for name in project.nodes:
        record = read_record(store, f"{name}:latest")
        if record is not None:
            out[name] = record
    return out


def layer_owners(project: Project, records: dict[str, ImageRecord], node: str) -> list[str]:
    """For each layer of ``node``'s image, the node that added it: the first ancestor (root
    first) whose own image has the same layer at the same position, else ``node`` itself."""
    chain = [a.name for a in reversed(project.ancestors(node))]
    digests = [x.descriptor.digest for x in records[node].layers]
    owners: list[str] = []
    for index, digest in enumerate(digests):
        owner = node
        for name in chain:
            layers = records[name].layers if name in records else ()
            if index < len(layers) and layers[index].descriptor.digest == digest:
                owner = name
                break
        owners.append(owner)
    return owners


def image_report(
    store: Store, project: Project, records: dict[str, ImageRecord], node: str
) -> ImageReport:
    record = records[node]
    spec = project.nodes[node]
    owners = layer_owners(project, records, node)
    layers: list[LayerReport] = []
    listings: list[Listing] = []
    for index, layer in enumerate(record.layers):
        entries = listing(store, layer.descriptor.digest)
        listings.append(entries)
        kind = layer_kind(layer.created_by)
        layers.append(
            LayerReport(
                digest=layer.descriptor.digest,
                size=layer.descriptor.size,
                uncompressed=layer.uncompressed_size,
                created_by=layer.created_by,
                kind=kind,
                owner=owners[index],
                inherited=owners[index] != node,
                holds=holds(kind, entries),
                files=sum(1 for e in entries.entries if e.kind == "file"),
            )
        )
    manifest = store.read_json(record.manifest.digest)
    return ImageReport(
        node=node,
        kind=spec.kind,
        parent=spec.parent,
        key=record.key,
        manifest=record.manifest.digest,
        manifest_size=record.manifest.size,
        config=str(manifest["config"]["digest"]),
        config_size=int(manifest["config"]["size"]),
        layers=tuple(layers),
        max_size=spec.max_size,
        waste=waste([x.entries for x in listings]),
    )


def describe_layer(x: LayerReport) -> str:
    held = ", ".join(f"{h.label} ({format_size(h.size)})" for h in x.holds[:3])
    return held or x.created_by
