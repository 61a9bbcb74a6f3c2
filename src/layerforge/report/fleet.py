"""The fleet view: what the base hierarchy saves, in bytes stored and bytes pulled.

*Layered* (what was built): unique blobs stored for the whole fleet; per service the blobs
a fresh node pulls to run it; for all services the union of those (shared layers count once).

*Naive* (the same services shipped each on its own, nothing shared): per service, the bytes
of its built image (every layer, config and manifest), counted from the store; the fleet
figure is their sum. (An estimate from the lock's wheel sizes counted wheels taken from
``find_links``, which the lock gives no size, as nothing.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from layerforge.builder.budgets import Breach
from layerforge.lock.lockfile import Lock
from layerforge.manifest import Project
from layerforge.oci.layout import Store
from layerforge.report.listing import listing
from layerforge.report.sizes import ImageReport, image_report, load_records

TOP_DISTS = 15


@dataclass(frozen=True)
class DistRow:
    name: str
    version: str
    size: int  # installed bytes
    images: tuple[str, ...]  # images holding it


@dataclass(frozen=True)
class FleetReport:
    project: str
    images: tuple[ImageReport, ...]
    services: tuple[str, ...]
    stored: int
    pulls: dict[str, int]
    pull_all: int
    naive: dict[str, int]
    dists: tuple[DistRow, ...]
    missing: tuple[str, ...] = ()

    @property
    def naive_all(self) -> int:
        return sum(self.naive.values())

    @property
    def saving_stored(self) -> int:
        return self.naive_all - self.stored

    @property
    def saving_pulled(self) -> int:
        return self.naive_all - self.pull_all

    @property
    def breaches(self) -> list[Breach]:
        return [
            Breach(i.node, i.uncompressed, i.max_size)
            for i in self.images
            if i.max_size is not None and i.over_budget
        ]

    def image(self, node: str) -> ImageReport:
        return next(i for i in self.images if i.node == node)

    def to_json(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "images": [i.to_json() for i in self.images],
            "missing": list(self.missing),
            "fleet": {
                "stored": self.stored,
                "services": list(self.services),
                "pull": self.pulls,
                "pull_all": self.pull_all,
                "naive": {"pull": self.naive, "pull_all": self.naive_all, "stored": self.naive_all},
                "saving": {"stored": self.saving_stored, "pulled": self.saving_pulled},
            },
            "largest_distributions": [
                {"name": d.name, "version": d.version, "size": d.size, "images": list(d.images)}
                for d in self.dists
            ],
            "budgets": [  # every image with a max_size; "over" marks a breach
                {
                    "node": i.node,
                    "size": i.uncompressed,
                    "max_size": i.max_size,
                    "over": i.over_budget,
                }
                for i in self.images
                if i.max_size is not None
            ],
        }


def union_size(images: list[ImageReport]) -> int:
    """Bytes of the distinct blobs of these images (a shared layer counts once)."""
    blobs: dict[str, int] = {}
    for image in images:
        blobs.update(image.blobs())
    return sum(blobs.values())


def largest_dists(images: list[ImageReport], store: Store, count: int = TOP_DISTS) -> list[DistRow]:
    found: dict[tuple[str, str], tuple[int, list[str]]] = {}
    for image in images:
        for layer in image.layers:
            if layer.kind != "deps":
                continue
            for d in listing(store, layer.digest).dists:
                _size, holders = found.setdefault((d.name, d.version), (d.size, []))
                holders.append(image.node)
    rows = [DistRow(n, v, s, tuple(h)) for (n, v), (s, h) in found.items()]
    return sorted(rows, key=lambda r: (-r.size, r.name))[:count]


def fleet_report(
    store: Store, project: Project, lock: Lock | None, selected: list[str] | None = None
) -> FleetReport:
    """The report of every node in ``selected`` (default: all) that the store holds.
    (``lock`` is not needed any more: every figure comes from the built images.)"""
    records = load_records(store, project)
    names = selected or list(project.nodes)
    images = [image_report(store, project, records, n) for n in names if n in records]
    services = [i for i in images if i.kind == "service"] or images
    return FleetReport(
        project=project.name,
        images=tuple(images),
        services=tuple(i.node for i in services),
        stored=union_size(images),
        pulls={i.node: i.size for i in services},
        pull_all=union_size(services),
        naive={i.node: i.size for i in services},  # each service alone: its own image
        dists=tuple(largest_dists(images, store)),
        missing=tuple(n for n in names if n not in records),
    )
