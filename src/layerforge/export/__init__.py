"""Exports for teams that build with Docker/BuildKit: Dockerfiles, docker-bake, CI workflows.

Each exporter implements :class:`~layerforge.export.common.Exporter` (a Protocol) and is
registered in :data:`EXPORTERS` by name; ``layerforge export NAME`` runs it.
"""

from __future__ import annotations

from layerforge.export.bake import BakeExporter
from layerforge.export.common import (
    ExportContext,
    Exporter,
    ExportOptions,
    GeneratedFile,
    WriteResult,
)
from layerforge.export.dockerfile import DockerfileExporter
from layerforge.export.github import GithubExporter
from layerforge.export.run import export, make_context

EXPORTERS: dict[str, Exporter] = {
    e.name: e for e in (DockerfileExporter(), BakeExporter(), GithubExporter())
}

__all__ = [
    "EXPORTERS",
    "ExportContext",
    "ExportOptions",
    "Exporter",
    "GeneratedFile",
    "WriteResult",
    "export",
    "make_context",
]
