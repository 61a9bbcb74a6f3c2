"""The migration report: every instruction of every Dockerfile (and every compose setting)
with where it went or why it was dropped, grouped by file, then the counts."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from layerforge.errors import LayerforgeError
from layerforge.migrate.mapping import NOT_MIGRATED, Migration, Row, rel, run_commands

REPORT_NAME = "layerforge-migration.md"

KINDS = {
    "dropped": "dropped with a reason",
    NOT_MIGRATED: "not migrated",
    "kept-as-run": "kept as a run step",
}


def kind(row: Row) -> str:
    if row.target in KINDS:
        return KINDS[row.target]
    if row.target in ("user", "expose", "healthcheck"):
        return "to set by hand"
    return "mapped"


def check_complete(m: Migration) -> None:
    """Every instruction has a row, and a RUN one per shell command: raises otherwise (a bug
    in the mapper, never the user's fault)."""
    have = Counter((r.file, r.line) for r in m.rows)
    for draft in m.drafts.values():
        for ins in draft.doc.instructions():
            want = len(run_commands(ins.value)) if ins.name == "RUN" else 1
            key = (rel(m.root, ins.file), ins.line)
            if have[key] < max(want, 1):
                raise LayerforgeError(f"migration lost {ins.name} at {key[0]}:{key[1]}")


def counts(rows: list[Row]) -> dict[str, int]:
    return dict(Counter(kind(r) for r in rows))


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(
    m: Migration, manifest: Path, lock_error: str | None, proposals: list[str] | None = None
) -> str:
    out = [
        "# Migration report",
        "",
        f"`layerforge init --from {m.root}` wrote `{rel(m.root, manifest)}`. Each row is one "
        "instruction (one shell command of a `RUN`) and where it went.",
        "",
    ]
    by_file: dict[str, list[Row]] = {}
    for row in sorted(m.rows, key=lambda r: (r.file, r.line)):  # stable: RUN commands in order
        by_file.setdefault(row.file, []).append(row)
    for file, rows in by_file.items():
        out += [
            f"## {file}",
            "",
            "| line | instruction | text | went to | detail |",
            "|---|---|---|---|---|",
        ]
        out += [
            f"| {r.line or ''} | {r.instruction} | `{_cell(r.text)}` | {r.target} | "
            f"{_cell(r.detail)} |"
            for r in rows
        ]
        out.append("")
    if m.generated:
        out += ["## Generated files", ""]
        out += [f"- `{path}`: the pip sources of one node, gathered" for path in m.generated]
        out.append("")
    problems = [*m.errors]
    if lock_error:
        problems.append(f"`layerforge lock` failed on the result: {lock_error}")
    if problems:
        out += ["## To fix", ""] + [f"- {_cell(p)}" for p in problems] + [""]
    if m.notes:
        out += ["## Notes", ""] + [f"- {_cell(n)}" for n in m.notes] + [""]
    if m.applied:
        out += ["## Shared bases", ""] + [f"- {_cell(a)}" for a in m.applied] + [""]
    if proposals:
        out += [
            "## Other hierarchies to consider",
            "",
            "The manifest keeps the Dockerfiles' structure. `layerforge suggest`, after your "
            "first build, scores these alternatives with measured sizes (docs/suggest.md):",
            "",
        ]
        out += [f"- {p}" for p in proposals] + [""]
    out += ["## Counts", ""]
    out += [f"- {k}: {v}" for k, v in sorted(counts(m.rows).items())]
    return "\n".join(out) + "\n"
