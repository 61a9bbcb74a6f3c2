"""Runtime groups in the manifest: requirements that are locked but not baked.

``runtime = { llm = ["vllm>=0.6"] }`` (or ``{ llm = "requirements/llm.txt" }``, or
``{ llm = { requirements = [...], needs = ["gpu"] } }``) on a base or a service declares a
group; ``needs`` is what it needs to run, reported by ``layerforge-runtime list``. The
group is resolved into ``layerforge.lock`` on top of every distribution baked into the node
(see :mod:`layerforge.lock.runtime`); the image carries only its pins and the launcher
(see :mod:`layerforge.builder.runtime_layer`).

A node's *effective* groups are its own plus those of its ancestors: a service on a base
with a group can install that group too. A group name may be declared once per chain.
The :class:`~layerforge.manifest.model.RuntimeGroup` type and its name rule are in
:mod:`layerforge.manifest.model`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from layerforge.errors import ManifestError
from layerforge.manifest import graph
from layerforge.manifest.confine import Confinement
from layerforge.manifest.model import Node, RuntimeGroup
from layerforge.manifest.requirements import read_requirements


def read_groups(
    value: Mapping[str, str | Sequence[str] | Mapping[str, Any]] | None,
    *,
    root: Path,
    manifest: str,
    key: str,
    confine: Confinement | None = None,
) -> tuple[RuntimeGroup, ...]:
    """The ``runtime`` table of one node, validated, sorted by group name."""
    groups: list[RuntimeGroup] = []
    for name, raw in sorted((value or {}).items()):
        where = f"{key}.{name}"
        needs: tuple[str, ...] = ()
        reqs = raw
        if isinstance(raw, Mapping):  # { requirements = ..., needs = [...] }
            needs = tuple(raw.get("needs") or ())
            reqs = raw["requirements"]
        lines = reqs if isinstance(reqs, str) else tuple(reqs)
        parsed = read_requirements(lines, root=root, manifest=manifest, key=where, confine=confine)
        if not parsed.lines:
            raise ManifestError(
                f"runtime group {name!r} has no requirements",
                file=manifest,
                key=where,
                hint="list at least one requirement, or remove the group",
            )
        groups.append(RuntimeGroup(name, parsed, needs))
    return tuple(groups)


def effective_groups(nodes: Mapping[str, Node], name: str) -> dict[str, tuple[Node, RuntimeGroup]]:
    """Groups a node can install: its own and its ancestors', with the node declaring each."""
    out: dict[str, tuple[Node, RuntimeGroup]] = {}
    for node in graph.chain(nodes, name):
        for group in node.runtime:
            out.setdefault(group.name, (node, group))
    return dict(sorted(out.items()))


def check_runtime(nodes: Mapping[str, Node], shown: str) -> None:
    """Group names unique along a chain; no runtime line against a baked '==' pin."""
    for node in nodes.values():
        chain = graph.chain(nodes, node.name)
        _check_unique(node, chain[1:], shown)
        for owner, group in effective_groups(nodes, node.name).values():
            for line in group.requirements.lines:
                _check_line(line, owner, group, chain, shown)


def _check_unique(node: Node, ancestors: list[Node], shown: str) -> None:
    for group in node.runtime:
        for above in ancestors:
            if any(g.name == group.name for g in above.runtime):
                raise ManifestError(
                    f"runtime group {group.name!r} is already declared by {above.section}",
                    file=shown,
                    key=f"{node.section}.runtime.{group.name}",
                    hint="a node inherits its ancestors' runtime groups: give this group "
                    "another name, or extend the one in " + above.section,
                )


def _check_line(line: str, owner: Node, group: RuntimeGroup, chain: list[Node], shown: str) -> None:
    req = Requirement(line)
    dist = canonicalize_name(req.name)
    for baked in chain:
        pinned = baked.requirements.names().get(dist)
        if pinned is None:
            continue
        exact = [s.version for s in pinned.specifier if s.operator in ("==", "===")]
        if exact and not any(req.specifier.contains(v, prereleases=True) for v in exact):
            raise ManifestError(
                f"runtime requirement {line!r} conflicts with {baked.section}, which bakes "
                f"{str(pinned)!r}",
                file=shown,
                key=f"{owner.section}.runtime.{group.name}",
                hint=f"a runtime install never changes a baked distribution: relax {dist} in "
                f"the runtime group, or change the pin in {baked.section}.requirements",
            )
