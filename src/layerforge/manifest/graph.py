"""Walks of the base/service tree, written once: a node's chain, its ancestors, its
descendants, and the parents-first order of a manifest's nodes.

The functions take any mapping of names to nodes that know their ``name``, ``kind`` and
``parent`` (:class:`layerforge.manifest.model.Node`), so this module imports no model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, TypeVar

from layerforge.errors import ManifestError


class Linked(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def parent(self) -> str | None: ...


N = TypeVar("N", bound=Linked)


def chain(nodes: Mapping[str, N], name: str) -> list[N]:
    """``name`` and its parents, nearest first (the root base last)."""
    out: list[N] = []
    current: str | None = name
    while current is not None:
        out.append(nodes[current])
        current = nodes[current].parent
    return out


def ancestors(nodes: Mapping[str, N], name: str) -> list[N]:
    """Parents of ``name``, nearest first."""
    return chain(nodes, name)[1:]


def descendants(nodes: Mapping[str, N], name: str) -> list[str]:
    """Names of the nodes below ``name``, in the order of ``nodes``."""
    return [
        node.name
        for node in nodes.values()
        if any(a.name == name for a in ancestors(nodes, node.name))
    ]


def topological(nodes: Mapping[str, N], shown: str) -> dict[str, N]:
    """Parents first, bases before services; a cycle of ``from`` is a ManifestError."""
    ordered: dict[str, N] = {}
    visiting: list[str] = []

    def visit(name: str) -> None:
        if name in ordered:
            return
        if name in visiting:
            cycle = [*visiting[visiting.index(name) :], name]
            raise ManifestError(
                f"bases form a cycle: {' -> '.join(cycle)}",
                file=shown,
                key=f"bases.{name}.from",
                hint="every chain of 'from' must end in an OS source",
            )
        visiting.append(name)
        parent = nodes[name].parent
        if parent is not None:
            visit(parent)
        visiting.pop()
        ordered[name] = nodes[name]

    for kind in ("base", "service"):
        for name, node in nodes.items():
            if node.kind == kind:
                visit(name)
    return ordered
