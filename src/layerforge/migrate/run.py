"""``init --from``, the file-writing half: map the repository, refuse to overwrite anything,
write the manifest and the generated requirements files. The caller (api) checks that the
result locks, then writes the report with :func:`write_report`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from layerforge.errors import UsageError
from layerforge.fsutil import atomic_write
from layerforge.manifest.messages import MANIFEST_NAME
from layerforge.manifest.model import PROJECT_NAME_RE, project_name_suggestion
from layerforge.migrate.emit import manifest_text, write_generated
from layerforge.migrate.fleet import map_fleet
from layerforge.migrate.mapping import NOT_MIGRATED, Migration, OsMode, Row
from layerforge.migrate.report import REPORT_NAME, check_complete, counts, markdown


@dataclass(frozen=True)
class Migrated:
    migration: Migration
    manifest: Path
    report: Path

    @property
    def rows(self) -> list[Row]:
        return self.migration.rows

    def problems(self) -> list[str]:
        missing = [
            f"{r.file}:{r.line}: {r.instruction} {r.text}: {r.detail}"
            for r in self.rows
            if r.target == NOT_MIGRATED
        ]
        return [*self.migration.errors, *missing]


def migrate(root: Path, name: str | None, os_mode: OsMode, tags: dict[str, Path]) -> Migrated:
    root = root.resolve()
    if not root.is_dir():
        raise UsageError(
            f"--from {root}: not a directory",
            hint="pass the repository that holds your Dockerfiles",
        )
    if name is not None and not PROJECT_NAME_RE.match(name):
        raise UsageError(
            f"--name {name!r} is not a valid image repository name",
            hint=f"e.g. --name {project_name_suggestion(name)}",
        )
    m = map_fleet(root, os_mode, tags)
    check_complete(m)
    text = manifest_text(m, name or project_name_suggestion(root.name))
    manifest = root / MANIFEST_NAME
    report = root / REPORT_NAME
    for path in [manifest, report, *(root / g for g in m.generated)]:
        if path.exists():
            raise UsageError(
                f"{path} already exists; layerforge init never overwrites a file",
                hint="remove it (or move it away) and run `layerforge init --from` again",
            )
    write_generated(m)
    atomic_write(manifest, text.encode())
    return Migrated(m, manifest, report)


def write_report(
    done: Migrated, lock_error: str | None, proposals: list[str] | None = None
) -> dict[str, int]:
    text = markdown(done.migration, done.manifest, lock_error, proposals or [])
    atomic_write(done.report, text.encode())
    return counts(done.rows)
