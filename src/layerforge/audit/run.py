"""The audit of a built fleet: vulnerabilities (OSV), unused requirements, licenses, and
outdated pins.

It reads the images in the store (``NODE:latest``, through their layers' contents, see
:mod:`layerforge.sbom.contents`), so it audits what was built: run ``layerforge build``
first. Each section has a status: ``ok``, or ``skipped`` with the reason (``--offline``, or
OSV that cannot be reached); the other sections run all the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from packaging.utils import canonicalize_name

from layerforge.audit.imports import imported_names
from layerforge.audit.osv import SEVERITIES, OsvUnavailable, Query, affected_fixes, severity
from layerforge.audit.outdated import IndexUnavailable, Release, newest_release, project_page
from layerforge.audit.versions import pypi_compare
from layerforge.lock.lockfile import Lock
from layerforge.manifest import Project
from layerforge.oci.layout import Store
from layerforge.records import read_record
from layerforge.sbom.contents import ImageContents, image_contents


class VulnerabilitySource(Protocol):
    def query(self, queries: list[Query]) -> list[list[dict[str, Any]]]: ...


@dataclass(frozen=True)
class Finding:
    id: str
    ecosystem: str
    package: str
    version: str
    severity: str
    summary: str
    fixed: tuple[str, ...]
    nodes: tuple[str, ...]  # the images that hold it

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "ecosystem": self.ecosystem,
            "package": self.package,
            "version": self.version,
            "severity": self.severity,
            "summary": self.summary,
            "fixed": list(self.fixed),
            "nodes": list(self.nodes),
        }


@dataclass(frozen=True)
class Requirement:
    node: str
    package: str
    version: str
    used_by: tuple[str, ...]  # the services whose imports justify it (empty: unused)


@dataclass(frozen=True)
class Outdated:
    node: str
    tier: int  # the node's depth below its OS source (0: a root base)
    package: str
    version: str
    newest: str
    uploaded: str  # when the newest was first uploaded (ISO 8601, "" if the index does not say)

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "tier": self.tier,
            "package": self.package,
            "version": self.version,
            "newest": self.newest,
            "uploaded": self.uploaded,
        }


@dataclass(frozen=True)
class AuditReport:
    vulnerabilities: tuple[Finding, ...] = ()
    vulnerabilities_skipped: str | None = None  # why the section did not run
    requirements: tuple[Requirement, ...] = ()
    licenses: dict[str, tuple[str, ...]] = field(default_factory=dict)  # license -> name==ver
    missing: tuple[str, ...] = ()  # nodes not built (not audited)
    outdated: tuple[Outdated, ...] = ()
    outdated_skipped: str | None = None

    @property
    def unused(self) -> tuple[Requirement, ...]:
        return tuple(r for r in self.requirements if not r.used_by)

    def worst(self) -> str | None:
        levels = [SEVERITIES.index(f.severity) for f in self.vulnerabilities]
        return SEVERITIES[max(levels)] if levels else None

    def at_or_above(self, threshold: str) -> tuple[Finding, ...]:
        """The findings at or above ``threshold`` (``unknown`` counts as ``medium``)."""
        limit = SEVERITIES.index(threshold)
        rank = {**{s: i for i, s in enumerate(SEVERITIES)}, "unknown": SEVERITIES.index("medium")}
        return tuple(f for f in self.vulnerabilities if rank[f.severity] >= limit)

    def to_json(self) -> dict[str, Any]:
        skipped = self.vulnerabilities_skipped
        return {
            "vulnerabilities": {
                "status": "skipped" if skipped else "ok",
                **({"reason": skipped} if skipped else {}),
                "findings": [f.to_json() for f in self.vulnerabilities],
            },
            "unused": {
                "status": "ok",
                "packages": [
                    {"node": r.node, "package": r.package, "version": r.version}
                    for r in self.unused
                ],
                "justified": {
                    r.node + ":" + r.package: list(r.used_by)
                    for r in self.requirements
                    if r.used_by
                },
            },
            "licenses": {
                "status": "ok",
                "groups": {k: list(v) for k, v in sorted(self.licenses.items()) if k},
                "unknown": list(self.licenses.get("", ())),
            },
            "outdated": {
                "status": "skipped" if self.outdated_skipped else "ok",
                **({"reason": self.outdated_skipped} if self.outdated_skipped else {}),
                "packages": [o.to_json() for o in self.outdated],
            },
            "not_built": list(self.missing),
        }


def _debian_ecosystem(contents: ImageContents) -> str:
    major = contents.os_release.get("VERSION_ID", "").split(".", 1)[0]
    return f"Debian:{major}" if major else "Debian"


def _queries(images: dict[str, ImageContents]) -> dict[Query, list[str]]:
    out: dict[Query, list[str]] = {}
    for node, contents in images.items():
        for found in contents.dists:
            dist = found.item
            query = Query("PyPI", canonicalize_name(dist.name), dist.version)
            out.setdefault(query, []).append(node)
        if contents.os_release.get("ID", "debian") != "debian":
            continue
        ecosystem = _debian_ecosystem(contents)
        for located in contents.debs:
            deb = located.item
            name, version = deb.source or deb.name, deb.source_version or deb.version
            nodes = out.setdefault(Query(ecosystem, name, version), [])
            if node not in nodes:
                nodes.append(node)
    return out


def vulnerabilities(
    images: dict[str, ImageContents], source: VulnerabilitySource
) -> tuple[Finding, ...]:
    queries = _queries(images)
    ordered = sorted(queries, key=lambda q: (q.ecosystem, q.name, q.version))
    findings: list[Finding] = []
    for query, records in zip(ordered, source.query(ordered), strict=True):
        for record in records:
            findings.append(
                Finding(
                    str(record.get("id", "")),
                    query.ecosystem,
                    query.name,
                    query.version,
                    severity(record),
                    str(record.get("summary", "")),
                    affected_fixes(record, query),
                    tuple(queries[query]),
                )
            )
    return tuple(sorted(findings, key=lambda f: (-SEVERITIES.index(f.severity), f.package, f.id)))


def _used(contents: ImageContents, imports: set[str]) -> set[str]:
    """The canonical names of the distributions ``imports`` reach, with what they require."""
    dists = {canonicalize_name(f.item.name): f.item for f in contents.dists}
    todo = [n for n, d in dists.items() if set(d.top_level) & imports]
    used: set[str] = set()
    while todo:
        name = todo.pop()
        if name in used or name not in dists:
            continue
        used.add(name)
        todo += [canonicalize_name(r) for r in dists[name].requires]
    return used


def requirements(
    project: Project, lock: Lock, images: dict[str, ImageContents]
) -> tuple[Requirement, ...]:
    """Each node's own locked packages, with the services (it or below it) that import them."""
    used_by: dict[str, set[str]] = {}
    for name, node in project.nodes.items():
        if node.kind == "service" and node.source is not None and name in images:
            used_by[name] = _used(images[name], imported_names(node.source))
    out: list[Requirement] = []
    for name in project.nodes:
        if name not in images:
            continue
        users = [s for s in [name, *project.descendants(name)] if s in used_by]
        for package in lock.nodes[name].packages:
            justify = tuple(sorted(s for s in users if package.name in used_by[s]))
            out.append(Requirement(name, package.name, package.version, justify))
    return tuple(out)


def licenses(images: dict[str, ImageContents]) -> dict[str, tuple[str, ...]]:
    groups: dict[str, set[str]] = {}
    for contents in images.values():
        for found in contents.dists:
            dist = found.item
            pin = f"{canonicalize_name(dist.name)}=={dist.version}"
            groups.setdefault(dist.license, set()).add(pin)
    return {k: tuple(sorted(v)) for k, v in groups.items()}


def outdated(project: Project, lock: Lock, index: str) -> tuple[Outdated, ...]:
    """Every pin older than the newest release on its index (its named index, else
    ``index``), by tier."""
    named = dict(lock.indexes)
    newest: dict[tuple[str, str], Release | None] = {}
    out: list[Outdated] = []
    for name in project.nodes:
        tier = len(project.ancestors(name))
        for package in lock.nodes[name].packages:
            where = named.get(package.index or "", index)
            if (where, package.name) not in newest:
                newest[(where, package.name)] = newest_release(project_page(where, package.name))
            release = newest[(where, package.name)]
            if release is not None and pypi_compare(release.version, package.version) > 0:
                out.append(Outdated(name, tier, package.name, package.version,
                                    release.version, release.uploaded))  # fmt: skip
    return tuple(sorted(out, key=lambda o: (o.tier, o.node, o.package)))


def audit(
    project: Project,
    lock: Lock,
    store: Store,
    source: VulnerabilitySource | None,
    skipped: str,
    index: str | None = None,
) -> AuditReport:
    """``source`` None: the vulnerability section is skipped, for ``skipped`` (the reason);
    ``index`` None: the outdated section is skipped (offline)."""
    images: dict[str, ImageContents] = {}
    missing: list[str] = []
    for name in project.nodes:
        record = read_record(store, f"{name}:latest")
        if record is None or not all(store.has_blob(x.descriptor.digest) for x in record.layers):
            missing.append(name)
            continue
        images[name] = image_contents(store, record.layers)
    found: tuple[Finding, ...] = ()
    if source is not None:
        try:
            found = vulnerabilities(images, source)
        except OsvUnavailable as exc:
            skipped = exc.message
        else:
            skipped = ""
    old: tuple[Outdated, ...] = ()
    old_skipped: str | None = "--offline: the index was not asked"
    if index is not None:
        try:
            old, old_skipped = outdated(project, lock, index), None
        except IndexUnavailable as exc:
            old_skipped = exc.message
    return AuditReport(
        found,
        skipped or None,
        requirements(project, lock, images),
        licenses(images),
        tuple(missing),
        old,
        old_skipped,
    )
