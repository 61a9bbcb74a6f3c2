"""Exports for teams that build with Docker/BuildKit: Dockerfiles, docker-bake, CI workflows.

Each exporter implements :class:`~layerforge.export.common.Exporter` (a Protocol) and is
registered in :data:`~layerforge.export.run.EXPORTERS` by name; ``layerforge export NAME`` runs it.
"""

from __future__ import annotations

from layerforge.export.common import (
    ExportContext,
    Exporter,
    ExportOptions,
    GeneratedFile,
    WriteResult,
)
from layerforge.export.run import EXPORTERS, export, make_context

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
