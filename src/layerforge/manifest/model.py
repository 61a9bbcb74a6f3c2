"""The validated manifest: :class:`Project`, its :class:`Node` tree, OS sources, runtime
groups and the rules for their names. Typed and frozen; built by :mod:`.parse`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from layerforge.errors import ManifestError
from layerforge.manifest import graph
from layerforge.manifest.messages import did_you_mean
from layerforge.manifest.nonroot import Healthcheck, User
from layerforge.manifest.requirements import Requirements

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
# One path component of an OCI repository name (distribution-spec), as archives are tagged
# PROJECT/NODE:TAG.
PROJECT_NAME_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
GROUP_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
MAX_EPOCH = 253402300799  # 9999-12-31T23:59:59Z, the last time an image's `created` can hold
SourceKind = Literal["rootfs", "oci", "debootstrap", "registry"]
NodeKind = Literal["base", "service"]


def project_name_suggestion(name: str) -> str:
    """``name`` made a valid project name: lowercase, other characters become '-'."""
    parts = re.split(r"[^a-z0-9]+", name.lower())
    return "-".join(p for p in parts if p) or "fleet"


def check_group_name(name: str) -> str:
    """Raises ValueError (pydantic turns it into a ManifestError naming the key)."""
    if not GROUP_RE.match(name):
        raise ValueError(
            f"{name!r} is not a valid runtime group name: use lowercase letters, digits, "
            "'_' or '-', starting with a letter or digit (e.g. 'llm')"
        )
    return name


@dataclass(frozen=True)
class RuntimeGroup:
    """Requirements that are locked but not baked (see :mod:`layerforge.manifest.runtime`)."""

    name: str
    requirements: Requirements
    needs: tuple[str, ...] = ()  # what it needs to run: "gpu" (`layerforge-runtime list`)


@dataclass(frozen=True)
class OSSource:
    """Where a root base's filesystem comes from."""

    kind: SourceKind
    spec: str  # path, layout[:tag], suite, or registry reference, as written
    path: Path | None = None  # rootfs / oci: absolute path
    tag: str | None = None  # oci: tag inside the layout
    packages: tuple[str, ...] = ()  # debootstrap
    variant: str = "minbase"  # debootstrap

    def describe(self) -> str:
        if self.kind == "debootstrap":
            extra = f" + {', '.join(self.packages)}" if self.packages else ""
            return f"debootstrap {self.spec}{extra}"
        return f"{self.kind}:{self.spec}" if self.kind != "registry" else self.spec


@dataclass(frozen=True)
class Index:
    """A named package index (``[[project.index]]``); never holds credentials."""

    name: str
    url: str
    explicit: bool = False  # only what [project.sources] pins to it comes from it
    default: bool = False  # instead of PyPI, for everything not pinned elsewhere


@dataclass(frozen=True)
class Node:
    name: str
    kind: NodeKind
    parent: str | None  # base name; None for a root base
    os_source: OSSource | None  # only for root bases
    requirements: Requirements
    env: tuple[tuple[str, str], ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    verify: tuple[str, ...] = ()
    max_size: int | None = None
    compile_bytecode: bool = False
    system: tuple[str, ...] = ()
    run: tuple[str, ...] = ()
    build_system: tuple[str, ...] = ()  # bases: apt packages for run steps and sdist builds
    network: bool = True
    context: Path | None = None  # bases: directory mounted at /context for run steps
    source: Path | None = None  # services: absolute path of the source tree
    command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    workdir: str | None = None
    runtime: tuple[RuntimeGroup, ...] = ()  # locked, not baked (manifest/runtime.py)
    user: User | None = None  # own, or the base's (inherited=True); None: root, as before
    writable: tuple[str, ...] = ()  # directories owned by the user (this node's own)
    expose: tuple[str, ...] = ()  # "8000/tcp"; the image config adds the parent's
    healthcheck: Healthcheck | None = None
    repository: str | None = None  # under project.registry (default: the name)
    tags: tuple[str, ...] | None = None  # tag templates (manifest/tags.py); None: the default
    version: str | None = None  # bases: overrides project.version (labels and tags only)

    @property
    def section(self) -> str:
        return f"{'bases' if self.kind == 'base' else 'services'}.{self.name}"


@dataclass(frozen=True)
class Project:
    name: str
    python: str
    platforms: tuple[str, ...]
    root: Path  # directory holding layerforge.toml
    manifest: Path
    nodes: dict[str, Node] = field(default_factory=dict)  # topological order, parents first
    registry: str | None = None
    version: str | None = None
    version_labels: bool = True  # org.opencontainers.image.version/revision (not in keys)
    layer_threshold: int = 200_000_000
    compression: Literal["gzip", "zstd"] = "gzip"
    index_url: str | None = None
    find_links: tuple[Path, ...] = ()
    source_date_epoch: int = 0
    indexes: tuple[Index, ...] = ()  # [[project.index]], in priority order
    sources: tuple[tuple[str, str], ...] = ()  # canonical distribution name -> index name
    cache_max: int | None = None  # bytes of unpacked layers and roots kept in the cache

    def ancestors(self, name: str) -> list[Node]:
        """Parents of ``name``, nearest first."""
        return graph.ancestors(self.nodes, name)

    def descendants(self, name: str) -> list[str]:
        return graph.descendants(self.nodes, name)

    def writable_above(self, name: str) -> tuple[str, ...]:
        """The ``writable`` paths of ``name``'s bases (still writable in its image)."""
        return tuple(p for above in self.ancestors(name) for p in above.writable)

    def root_of(self, name: str) -> Node:
        chain = self.ancestors(name)
        return chain[-1] if chain else self.nodes[name]

    def select(self, names: tuple[str, ...] | list[str]) -> list[str]:
        """Names plus their ancestors, in build order; unknown names are a ManifestError."""
        wanted: set[str] = set()
        for name in names:
            if name not in self.nodes:
                raise ManifestError(
                    f"no node named {name!r}{did_you_mean(name, self.nodes)}",
                    file=str(self.manifest),
                    hint=f"nodes: {', '.join(self.nodes)}",
                )
            wanted.add(name)
            wanted.update(a.name for a in self.ancestors(name))
        return [n for n in self.nodes if n in wanted]
