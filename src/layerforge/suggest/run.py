"""``layerforge suggest``: measure the built fleet, re-lock every candidate hierarchy, predict
its layers, score it, and recommend one (see docs/suggest.md)."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import unquote, urlsplit

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from layerforge.errors import LayerforgeError, ManifestError, UsageError
from layerforge.events import NullReporter
from layerforge.lock.inputs import all_inputs
from layerforge.lock.lockfile import Lock, LockedNode, Package, SourcePin
from layerforge.lock.resolve import resolve
from layerforge.lock.uv import ResolveOptions
from layerforge.manifest import Project, did_you_mean
from layerforge.oci.layout import Store
from layerforge.report.listing import listing
from layerforge.report.sizes import image_report, load_records
from layerforge.suggest.candidates import TODAY, Candidate, Edit, Safe, below, candidates
from layerforge.suggest.imports import (
    DistInfo,
    closure,
    command_roots,
    read_dists,
    source_imports,
)
from layerforge.suggest.model import (
    Blob,
    Known,
    Score,
    Shape,
    pareto_front,
    recommend,
    score,
)
from layerforge.suggest.releases import rates


@dataclass(frozen=True)
class Scored:
    name: str
    edits: tuple[Edit, ...]
    score: Score
    error: str | None = None  # the re-lock failed: not a candidate after all
    unused: int = 0  # bytes in service images their services are not seen to import

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "edits": [e.to_json() for e in self.edits],
            "stored": self.score.stored,
            "pulled": self.score.pulled,
            "pulled_total": self.score.pulled_total,
            "images": self.score.images,
            "score": self.score.total,
            "estimated": self.score.estimated,
            "rebuild_pulled_per_month": self.score.rebuild,
            "unused": self.unused,
            "error": self.error,
        }


@dataclass(frozen=True)
class Suggestion:
    pools: dict[str, list[str]]
    candidates: tuple[Scored, ...]
    front: tuple[str, ...]
    chosen: str
    releases_from: str | None = None  # the index release dates were read from
    rates_known: int = 0  # distributions whose release rate is known

    def to_json(self) -> dict[str, object]:
        return {
            "releases": {"index": self.releases_from, "known": self.rates_known},
            "pools": self.pools,
            "candidates": [c.to_json() for c in self.candidates],
            "front": list(self.front),
            "recommended": self.chosen,
        }

    def candidate(self, name: str) -> Scored:
        return next(c for c in self.candidates if c.name == name)


def measure(store: Store, project: Project) -> tuple[Known, dict[str, DistInfo]]:
    """What the built images say (the latest build of every node), and what each installed
    distribution provides (import names, scripts) and requires."""
    records = load_records(store, project)
    missing = [n for n in project.nodes if n not in records]
    if missing:
        raise UsageError(
            f"not built yet: {', '.join(missing)}",
            hint="run `layerforge build` first: suggest predicts from measured layers",
        )
    known = Known(threshold=project.layer_threshold)
    infos: dict[str, DistInfo] = {}
    for name in project.nodes:
        image = image_report(store, project, records, name)
        known.meta[name] = image.manifest_size + image.config_size
        for layer in image.layers:
            if layer.inherited:
                continue
            if layer.kind != "deps":
                known.fixed.setdefault(name, []).append(Blob(layer.digest, layer.size))
                continue
            dists = [
                ((canonicalize_name(d.name), d.version), d.size)
                for d in listing(store, layer.digest).dists
            ]
            known.add_deps_layer(layer.digest, layer.size, dists)
            infos.update(
                (d.name, d) for d in read_dists(store.blob_path(layer.digest), layer.digest)
            )
    return known, infos


def uses(project: Project, infos: dict[str, DistInfo]) -> dict[str, set[str]]:
    """service -> the distributions it is seen to use (see suggest/imports.py)."""
    out: dict[str, set[str]] = {}
    for name, node in project.nodes.items():
        if node.kind != "service":
            continue
        imports = source_imports(node.source) if node.source is not None else set()
        executables: set[str] = set()
        for argv in (node.entrypoint or (), node.command or ()):
            more, exe = command_roots(argv)
            imports |= more
            executables |= exe
        out[name] = closure(imports, executables, infos)
    return out


def _safe(project: Project, lock: Lock, used: dict[str, set[str]]) -> Safe:
    def safe(node: str, skipped: str) -> bool:
        owned = {p.name for p in lock.nodes[skipped].packages} if skipped in lock.nodes else set()
        return not any(used.get(s, set()) & owned for s in below(project, node))

    return safe


def unused_bytes(known: Known, shape: Shape, used: dict[str, set[str]]) -> int:
    """Bytes of distributions in service images that the service is not seen to use (an
    upper bound: dynamic imports are invisible)."""
    total = 0
    for service in shape.services:
        chain: list[str] = []
        current: str | None = service
        while current is not None:
            chain.append(current)
            current = shape.parents.get(current)
        for node in chain:
            for dist, wheel in shape.dists.get(node, {}).items():
                if dist[0] in used.get(service, set()):
                    continue
                own = known.own.get(dist)
                total += own.size if own else round(known.share.get(dist, wheel * 1.15))
    return total


def _wheel_size(package: Package) -> int:
    if package.size:
        return package.size
    parts = urlsplit(package.url)
    if parts.scheme == "file":
        try:
            return Path(unquote(parts.path)).stat().st_size
        except OSError:
            return 0
    return 0


def shape_of(project: Project, lock: Lock) -> Shape:
    return Shape(
        parents={n: node.parent for n, node in project.nodes.items()},
        services=tuple(n for n, node in project.nodes.items() if node.kind == "service"),
        dists={
            n: {(p.name, p.version): _wheel_size(p) for p in lock.nodes[n].packages}
            for n in project.nodes
            if n in lock.nodes
        },
    )


def manifest_pools(project: Project) -> dict[str, list[str]]:
    """The manifest's ``[suggest.pools]`` (validated by the schema; its members are checked
    here, against the services)."""
    data = tomllib.loads(project.manifest.read_text())
    pools = {
        str(k): [str(m) for m in v] for k, v in data.get("suggest", {}).get("pools", {}).items()
    }
    services = [n for n, node in project.nodes.items() if node.kind == "service"]
    for pool, members in pools.items():
        unknown = [m for m in members if m not in services]
        if unknown:
            raise ManifestError(
                f"pool {pool!r} names {', '.join(unknown)}, which is not a service"
                f"{did_you_mean(unknown[0], services)}",
                file=str(project.manifest),
                key=f"suggest.pools.{pool}",
                hint=f"the services are: {', '.join(services)}",
            )
    return pools


def pools_for(project: Project, given: Mapping[str, list[str]]) -> dict[str, list[str]]:
    """The placement: the manifest's ``[suggest.pools]`` and the pools given (which win),
    plus a node of its own for every other service."""
    services = [n for n, node in project.nodes.items() if node.kind == "service"]
    for pool, members in given.items():
        unknown = [m for m in members if m not in services]
        if unknown:
            raise UsageError(
                f"pool {pool!r} names {', '.join(unknown)}, which is not a service",
                hint=f"the services are: {', '.join(services)}",
            )
    given = {**manifest_pools(project), **given}
    placed = {m for members in given.values() for m in members}
    pools = {p: list(m) for p, m in given.items()}
    pools.update({s: [s] for s in services if s not in placed and s not in pools})
    return pools


def _relock(candidate: Candidate, lock: Lock) -> Lock:
    if candidate.name == TODAY:
        return lock
    pins: dict[str, SourcePin] = {
        n: locked.source for n, locked in lock.nodes.items() if locked.source is not None
    }
    return resolve(
        candidate.project, _preferences(candidate, lock), ResolveOptions(), NullReporter(), pins
    )


def _preferences(candidate: Candidate, lock: Lock) -> Lock:
    """Today's lock, where a node the candidate changes prefers every version locked today
    anywhere in the fleet (a merged base keeps its child's versions, not the newest ones):
    what moves between candidates is the hierarchy, not the versions."""
    every = tuple({p.name: p for n in lock.nodes.values() for p in n.packages}.values())
    inputs = all_inputs(candidate.project)
    nodes = {
        name: old
        if name in lock.nodes and (old := lock.nodes[name]).inputs == inputs[name]
        else LockedNode("", every)
        for name in candidate.project.nodes
    }
    return replace(lock, nodes=nodes)


def release_index(project: Project) -> str | None:
    """The index to read release dates from: the project's default index, if it names one."""
    default = next((i.url for i in project.indexes if i.default), None)
    return default or project.index_url


def _specifiers(project: Project) -> dict[str, SpecifierSet]:
    out: dict[str, SpecifierSet] = {}
    for node in project.nodes.values():
        for line in node.requirements.lines:
            req = Requirement(line)
            out.setdefault(str(canonicalize_name(req.name)), req.specifier)
    return out


def _rates(
    project: Project, locks: list[Lock], index: str | None, cache_dir: Path | None
) -> dict[str, float]:
    if index is None:
        return {}
    names = sorted({p.name for lk in locks for n in lk.nodes.values() for p in n.packages})
    specs = _specifiers(project)
    found = rates(index, [(n, specs.get(n)) for n in names], cache_dir=cache_dir)
    return {n: r for n, r in found.items() if r is not None}


def suggest(
    project: Project,
    lock: Lock,
    store: Store,
    pools: Mapping[str, list[str]],
    *,
    releases: bool = True,
    horizon: int = 6,
    cache_dir: Path | None = None,
) -> Suggestion:
    """Score every candidate; ``releases``: read release dates from the project's default
    index (when it names one) for the rebuild measure."""
    known, infos = measure(store, project)
    used = uses(project, infos)
    placement = pools_for(project, pools)
    scored: list[Scored] = []
    locked: dict[str, tuple[Candidate, Lock]] = {}
    for candidate in candidates(project, _safe(project, lock, used), used):
        try:
            locked[candidate.name] = (candidate, _relock(candidate, lock))
        except LayerforgeError as exc:  # a candidate that does not resolve is no candidate
            empty = Score(0, {}, 0, estimated=True)
            scored.append(Scored(candidate.name, candidate.edits, empty, str(exc)))
    index = release_index(project) if releases else None
    monthly = _rates(project, [lk for _, lk in locked.values()], index, cache_dir)
    for candidate, candidate_lock in locked.values():
        shape = shape_of(candidate.project, candidate_lock)
        result = score(known, shape, placement, monthly, horizon)
        unused = unused_bytes(known, shape, used)
        scored.append(Scored(candidate.name, candidate.edits, result, unused=unused))
    order = {c.name: i for i, c in enumerate(candidates(project, _safe(project, lock, used), used))}
    scored.sort(key=lambda c: order.get(c.name, len(order)))
    usable = {c.name: c.score for c in scored if c.error is None}
    front = pareto_front(usable)
    chosen = recommend(usable, front, TODAY)
    return Suggestion(placement, tuple(scored), tuple(front), chosen, index, len(monthly))
