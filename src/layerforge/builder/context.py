"""What one build needs, shared by the executor and the helpers it calls.

:class:`BuildContext` is made once per build by :func:`layerforge.api.build_project`;
:class:`RemoteCache` is the seam to the registry cache (implemented by
:class:`layerforge.publish.RegistryCache`), so the builder never imports the publisher.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from layerforge.builder.budgets import Breach
from layerforge.builder.layercache import LayerSink
from layerforge.events import Reporter
from layerforge.lock.lockfile import Lock
from layerforge.manifest import Project
from layerforge.oci.config import RegistryConfig
from layerforge.oci.layout import Store
from layerforge.oci.write import Compression
from layerforge.plan import Step
from layerforge.records import ImageRecord
from layerforge.sourcetree import SourceTree

# built: written now; cached: its tag was in the store; remote: fetched from the registry cache;
# rebased: put on a new OS, its Python, runtime and app layers kept (layerforge rebase);
# relabelled: only its version/revision labels changed: a new config and manifest
Outcome = Literal["built", "cached", "remote", "rebased", "relabelled"]


class RemoteCache(Protocol):
    """Fetches a node the registry already holds (see layerforge.publish.RegistryCache)."""

    def fetch(self, step: Step, store: Store, parent: ImageRecord | None) -> ImageRecord: ...


@dataclass
class BuildContext:
    project: Project
    lock: Lock
    store: Store
    cache_dir: Path
    reporter: Reporter
    trees: dict[str, SourceTree]
    jobs: int = 2
    remote: RemoteCache | None = None
    verify: bool = True  # run each built node's verify statements in its image
    runner: str | None = None  # sandbox runner (bwrap by default)
    timings: dict[str, dict[str, float]] = field(default_factory=dict)
    allow_oversize: bool = False
    registry: RegistryConfig | None = None  # for registry OS sources (read by the caller)
    breaches: list[Breach] = field(default_factory=list)  # every image over its max_size
    sbom: bool = True  # write each built image's SBOM into the store (layerforge.sbom)

    @property
    def compression(self) -> Compression:
        return self.project.compression

    @property
    def layers(self) -> LayerSink:
        """What the layer writer and the layer cache need of this build."""
        return LayerSink(
            self.store, self.reporter, self.compression, self.project.source_date_epoch
        )


@dataclass(frozen=True)
class NodeResult:
    node: str
    status: Outcome
    record: ImageRecord
    seconds: float
    new_bytes: int = 0  # compressed bytes of layers written by this build
