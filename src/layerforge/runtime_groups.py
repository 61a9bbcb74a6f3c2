"""Runtime groups in the manifest: requirements that are locked but not baked.

``runtime = { llm = ["vllm>=0.6"] }`` (or ``{ llm = "requirements/llm.txt" }``) on a base or
a service declares a group. The group is resolved into ``layerforge.lock`` on top of every
distribution baked into the node (see :mod:`layerforge.runtime_lock`); the image carries
only its pins and the launcher (see :mod:`layerforge.runtime_layer`).

A node's *effective* groups are its own plus those of its ancestors: a service on a base
with a group can install that group too. A group name may be declared once per chain.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from layerforge.confine import Confinement
from layerforge.errors import ManifestError
from layerforge.requirements import Requirements, read_requirements

if TYPE_CHECKING:
    from layerforge.manifest import Node

GROUP_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


@dataclass(frozen=True)
class RuntimeGroup:
    name: str
    requirements: Requirements


def check_group_name(name: str) -> str:
    """Raises ValueError (pydantic turns it into a ManifestError naming the key)."""
    if not GROUP_RE.match(name):
        raise ValueError(
            f"{name!r} is not a valid runtime group name: use lowercase letters, digits, "
            "'_' or '-', starting with a letter or digit (e.g. 'llm')"
        )
    return name


def read_groups(
    value: Mapping[str, str | Sequence[str]] | None,
    *,
    root: Path,
    manifest: str,
    key: str,
    confine: Confinement | None = None,
) -> tuple[RuntimeGroup, ...]:
    """The ``runtime`` table of one node, validated, sorted by group name."""
    groups: list[RuntimeGroup] = []
    for name, reqs in sorted((value or {}).items()):
        where = f"{key}.{name}"
        lines = reqs if isinstance(reqs, str) else tuple(reqs)
        parsed = read_requirements(lines, root=root, manifest=manifest, key=where, confine=confine)
        if not parsed.lines:
            raise ManifestError(
                f"runtime group {name!r} has no requirements",
                file=manifest,
                key=where,
                hint="list at least one requirement, or remove the group",
            )
        groups.append(RuntimeGroup(name, parsed))
    return tuple(groups)


def effective_groups(nodes: Mapping[str, Node], name: str) -> dict[str, tuple[Node, RuntimeGroup]]:
    """Groups a node can install: its own and its ancestors', with the node declaring each."""
    out: dict[str, tuple[Node, RuntimeGroup]] = {}
    current: str | None = name
    while current is not None:
        node = nodes[current]
        for group in node.runtime:
            out.setdefault(group.name, (node, group))
        current = node.parent
    return dict(sorted(out.items()))


def check_runtime(nodes: Mapping[str, Node], shown: str) -> None:
    """Group names unique along a chain; no runtime line against a baked '==' pin."""
    for node in nodes.values():
        chain = _chain(nodes, node.name)
        _check_unique(node, chain[1:], shown)
        for owner, group in effective_groups(nodes, node.name).values():
            for line in group.requirements.lines:
                _check_line(line, owner, group, chain, shown)


def _chain(nodes: Mapping[str, Node], name: str) -> list[Node]:
    out: list[Node] = []
    current: str | None = name
    while current is not None:
        out.append(nodes[current])
        current = nodes[current].parent
    return out


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
