"""The fleet view: what the base hierarchy saves, in bytes stored and bytes pulled.

*Layered* (what was built): unique blobs stored for the whole fleet; per service the blobs
a fresh node pulls to run it; for all services the union of those (shared layers count once).

*Naive* (the same services without a base hierarchy: each one image holding all of its
dependencies, nothing shared): per service, the image's non-dependency layers (OS, venv,
system, application), plus one dependency layer estimated from the locked distributions of
the service and all its ancestors (a wheel's size is close to its gzip-compressed files),
plus config and manifest. Nothing is shared, so the fleet figure is the sum.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
    wheel_bytes: dict[str, int] = field(default_factory=dict)

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


def naive_size(image: ImageReport, wheel_bytes: int) -> int:
    """One image with all dependencies in it, nothing shared (see the module docstring)."""
    rest = sum(x.size for x in image.layers if x.kind != "deps")
    return rest + wheel_bytes + image.config_size + image.manifest_size


def chain_wheel_bytes(project: Project, lock: Lock, node: str) -> int:
    chain = [a.name for a in reversed(project.ancestors(node))] + [node]
    packages = lock.packages_with_ancestors([n for n in chain if n in lock.nodes])
    return sum(p.size for p in packages.values())


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
    """The report of every node in ``selected`` (default: all) that the store holds."""
    records = load_records(store, project)
    names = selected or list(project.nodes)
    images = [image_report(store, project, records, n) for n in names if n in records]
    services = [i for i in images if i.kind == "service"] or images
    wheels = {
        i.node: chain_wheel_bytes(project, lock, i.node) if lock is not None else 0
        for i in services
    }
    return FleetReport(
        project=project.name,
        images=tuple(images),
        services=tuple(i.node for i in services),
        stored=union_size(images),
        pulls={i.node: i.size for i in services},
        pull_all=union_size(services),
        naive={i.node: naive_size(i, wheels[i.node]) for i in services},
        dists=tuple(largest_dists(images, store)),
        missing=tuple(n for n in names if n not in records),
        wheel_bytes=wheels,
    )
