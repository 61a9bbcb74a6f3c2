"""Run one exporter: read the lock, compute the content keys, render, write idempotently.

Exporters implement :class:`~layerforge.export.common.Exporter` and are registered in
:data:`EXPORTERS` by name; ``layerforge export NAME`` runs one.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from layerforge.events import NullReporter, Reporter
from layerforge.export.bake import BakeExporter
from layerforge.export.common import (
    ExportContext,
    Exporter,
    ExportOptions,
    WriteResult,
    content_keys,
    write_files,
)
from layerforge.export.dockerfile import ROOTFS, DockerfileExporter, needs_rootfs
from layerforge.export.github import GithubExporter
from layerforge.export.prune import prune
from layerforge.export.rootfs import write_rootfs
from layerforge.lock.lockfile import Lock
from layerforge.manifest import Project
from layerforge.oci.layout import Store

EXPORTERS: dict[str, Exporter] = {
    e.name: e for e in (DockerfileExporter(), BakeExporter(), GithubExporter())
}


def make_context(
    project: Project, lock: Lock, options: ExportOptions, exclude: tuple[Path, ...] = ()
) -> ExportContext:
    """``exclude``: the store and cache directories in use (never part of a source tree)."""
    return ExportContext(project, lock, content_keys(project, lock, exclude), options)


def export(
    kind: str,
    ctx: ExportContext,
    *,
    store: Path | None = None,
    cache_dir: Path | None = None,
    reporter: Reporter | None = None,
) -> WriteResult:
    """Render and write the files of exporter ``kind``. With ``store`` (dockerfiles only),
    also write the root filesystem tarballs the Dockerfiles of root bases ``ADD``."""
    files = EXPORTERS[kind].render(ctx)
    result = write_files(files)
    if kind == "dockerfiles":
        result = replace(result, removed=tuple(_prune(ctx, {f.path for f in files})))
    if kind == "dockerfiles" and store is not None and cache_dir is not None:
        opened = Store.open(store)
        with opened.shared():  # OS layers are written to the store: gc waits
            written, unchanged = write_rootfs(
                ctx.project,
                ctx.lock,
                opened,
                cache_dir,
                ctx.options.dockerfiles,
                reporter or NullReporter(),
            )
        result = replace(
            result,
            written=(*result.written, *written),
            unchanged=(*result.unchanged, *unchanged),
        )
    return result


def _prune(ctx: ExportContext, written: set[Path]) -> list[Path]:
    """Files of an earlier export that this one no longer writes (e.g. removed nodes)."""
    directory = ctx.options.dockerfiles
    tarballs = {directory / n for n, node in ctx.project.nodes.items() if needs_rootfs(node)}
    return prune(directory, written | {d / ROOTFS for d in tarballs})
