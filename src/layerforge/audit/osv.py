"""Vulnerabilities from OSV: its API (``POST /v1/querybatch``, then ``GET /v1/vulns/ID`` for
each record) or a directory of its offline exports (``DIR/ECOSYSTEM/*.json``, one record a
file, as ``gsutil cp gs://osv-vulnerabilities/ECOSYSTEM/all.zip`` unpacks), evaluated here.

A query is (ecosystem, name, version): ``PyPI`` with the distribution's canonical name, and
``Debian:12`` with the **source** package and its version (OSV's Debian records name source
packages). Severity is the record's ``database_specific.severity`` (or an affected entry's),
as OSV's GitHub and Debian records give it; ``unknown`` otherwise (CVSS vectors are not
scored).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layerforge.audit.versions import comparator
from layerforge.errors import LayerforgeError

BATCH = 1000  # queries per querybatch request (OSV's limit)
TIMEOUT = 20.0
SEVERITIES = ("unknown", "low", "medium", "high", "critical")


class OsvUnavailable(LayerforgeError):
    """OSV could not be asked (the audit's vulnerability section is then skipped)."""


@dataclass(frozen=True)
class Query:
    ecosystem: str
    name: str
    version: str

    def to_json(self) -> dict[str, Any]:
        return {
            "package": {"ecosystem": self.ecosystem, "name": self.name},
            "version": self.version,
        }


def severity(record: dict[str, Any]) -> str:
    candidates = [record.get("database_specific") or {}]
    candidates += [a.get("database_specific") or {} for a in record.get("affected", [])]
    candidates += [a.get("ecosystem_specific") or {} for a in record.get("affected", [])]
    for found in candidates:
        value = str(found.get("severity", "")).lower()
        value = "medium" if value == "moderate" else value
        if value in SEVERITIES:
            return value
    return "unknown"


def _matches(affected: dict[str, Any], query: Query) -> bool:
    package = affected.get("package", {})
    return (
        str(package.get("ecosystem", "")).split(":")[0] == query.ecosystem.split(":")[0]
        and (
            ":" not in str(package.get("ecosystem", ""))
            or package.get("ecosystem") == query.ecosystem
        )
        and str(package.get("name", "")).lower() == query.name.lower()
    )


def _in_range(events: list[dict[str, str]], version: str, ecosystem: str) -> bool:
    """Whether ``version`` falls in an ECOSYSTEM range (its events in OSV's order)."""
    compare = comparator(ecosystem)
    inside = False
    for event in events:
        if "introduced" in event:
            start = event["introduced"]
            if start == "0" or compare(version, start) >= 0:
                inside = True
        elif ("fixed" in event and inside and compare(version, event["fixed"]) >= 0) or (
            "last_affected" in event and inside and compare(version, event["last_affected"]) > 0
        ):
            inside = False
    return inside


def affects(record: dict[str, Any], query: Query) -> bool:
    for affected in record.get("affected", []):
        if not _matches(affected, query):
            continue
        if query.version in affected.get("versions", []):
            return True
        for spec in affected.get("ranges", []):
            if spec.get("type") == "ECOSYSTEM" and _in_range(
                spec.get("events", []), query.version, query.ecosystem
            ):
                return True
    return False


def affected_fixes(record: dict[str, Any], query: Query) -> tuple[str, ...]:
    """The versions that fix ``record`` for ``query``'s package."""
    fixes = {
        str(event["fixed"])
        for affected in record.get("affected", [])
        if _matches(affected, query)
        for spec in affected.get("ranges", [])
        for event in spec.get("events", [])
        if "fixed" in event
    }
    return tuple(sorted(fixes))


class OsvDb:
    """OSV's offline exports in a directory (``--db DIR``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _records(self, ecosystem: str) -> Iterator[dict[str, Any]]:
        directory = self.root / ecosystem.split(":", maxsplit=1)[0]
        for path in sorted(directory.glob("*.json")) if directory.is_dir() else ():
            try:
                value = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(value, dict):
                yield value

    def query(self, queries: list[Query]) -> list[list[dict[str, Any]]]:
        if not self.root.is_dir():
            raise OsvUnavailable(f"the OSV database {self.root} is not a directory")
        cache: dict[str, list[dict[str, Any]]] = {}
        out: list[list[dict[str, Any]]] = []
        for query in queries:
            eco = query.ecosystem.split(":")[0]
            records = cache.setdefault(eco, list(self._records(eco)))
            out.append([r for r in records if affects(r, query)])
        return out


class OsvApi:
    """OSV's HTTP API at ``base_url``."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    def _request(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310  (an http(s) URL the user gave)
            self.base_url + path,
            data=data,
            headers={"Content-Type": "application/json"} if data else {},
            method="POST" if data else "GET",
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as resp:  # noqa: S310
                value = json.loads(resp.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise OsvUnavailable(f"OSV at {self.base_url} could not be asked: {exc}") from exc
        return value if isinstance(value, dict) else {}

    def query(self, queries: list[Query]) -> list[list[dict[str, Any]]]:
        ids: list[list[str]] = []
        for start in range(0, len(queries), BATCH):
            chunk = queries[start : start + BATCH]
            answer = self._request("/v1/querybatch", {"queries": [q.to_json() for q in chunk]})
            results = answer.get("results", [])
            for i in range(len(chunk)):
                vulns = results[i].get("vulns", []) if i < len(results) else []
                ids.append([str(v["id"]) for v in vulns or []])
        records: dict[str, dict[str, Any]] = {}
        for vid in sorted({v for row in ids for v in row}):
            records[vid] = self._request(f"/v1/vulns/{vid}")
        return [[records[v] for v in row] for row in ids]
