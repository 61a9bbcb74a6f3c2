"""The audit's section of the HTML report, from ``AuditReport.to_json()`` (the report does
not import the audit: it renders its document)."""

from __future__ import annotations

from html import escape
from typing import Any


def _table(columns: tuple[str, ...], rows: list[list[str]], empty: str) -> str:
    if not rows:
        return f"<p class=muted>{escape(empty)}</p>"
    head = "<tr>" + "".join(f"<th>{escape(c)}</th>" for c in columns) + "</tr>"
    body = "".join("<tr>" + "".join(f"<td>{escape(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table>{head}{body}</table>"


def _skipped(section: dict[str, Any]) -> str:
    return f"<p class=muted>Skipped: {escape(str(section.get('reason', '')))}</p>"


def audit_section(doc: dict[str, Any]) -> str:
    vulns, old = doc["vulnerabilities"], doc["outdated"]
    parts = ["<h2>Audit</h2>", "<h3>Vulnerabilities</h3>"]
    if vulns["status"] == "skipped":
        parts.append(_skipped(vulns))
    else:
        rows = [[f["severity"], f["id"], f"{f['package']} ({f['ecosystem']})", f["version"],
                 ", ".join(f["fixed"]) or "-", ", ".join(f["nodes"])]
                for f in vulns["findings"]]  # fmt: skip
        columns = ("severity", "id", "package", "version", "fixed in", "images")
        parts.append(_table(columns, rows, "None found."))
    parts.append("<h3>Unused requirements</h3>")
    unused = [[r["node"], r["package"], r["version"]] for r in doc["unused"]["packages"]]
    parts.append(_table(("node", "package", "version"), unused, "None: every pin is imported."))
    parts.append("<h3>Licenses</h3>")
    groups = [[k, ", ".join(v)] for k, v in doc["licenses"]["groups"].items()]
    if doc["licenses"]["unknown"]:
        groups.append(["(unknown)", ", ".join(doc["licenses"]["unknown"])])
    parts.append(_table(("license", "packages"), groups, "No distributions."))
    parts.append("<h3>Outdated pins</h3>")
    if old["status"] == "skipped":
        parts.append(_skipped(old))
    else:
        rows = [[str(o["tier"]), o["node"], o["package"], o["version"], o["newest"],
                 o["uploaded"][:10]] for o in old["packages"]]  # fmt: skip
        columns = ("tier", "node", "package", "pinned", "newest", "released")
        parts.append(_table(columns, rows, "None: every pin is the newest release."))
    return "".join(parts)
