"""What a lock entry was resolved from, and whether it is stale: pure functions, no uv.

A node's ``inputs`` digest covers the target Python and platform, the indexes, its
requirement lines, its OS source and its parent's digest; a runtime group's covers its lines
and every baked pin below it (see :mod:`layerforge.lock.runtime`). ``lock --check`` and
``plan`` compare them with the lock file; the content keys of ``plan`` add :func:`key_doc`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from layerforge import runtime
from layerforge.fsutil import digest_json
from layerforge.lock.lockfile import Lock, LockedGroup, LockedNode, Package
from layerforge.lock.uv import uv_platform
from layerforge.manifest import Node, Project
from layerforge.manifest.model import RuntimeGroup
from layerforge.manifest.runtime import effective_groups


def node_inputs(project: Project, node: Node, parent_inputs: str | None) -> str:
    """Digest of everything a node's resolution depends on (not its results)."""
    doc: dict[str, Any] = {
        "python": project.python,
        "platform": uv_platform(project),
        "index_url": project.index_url,
        "find_links": [rel(project, p) for p in project.find_links],
        "requirements": sorted(node.requirements.lines),
        "parent": parent_inputs,
    }
    if node.os_source is not None:
        doc["source"] = [node.os_source.kind, node.os_source.spec, list(node.os_source.packages)]
    return digest_json(doc)


def rel(project: Project, path: Path) -> str:
    try:
        return path.relative_to(project.root).as_posix()
    except ValueError:
        return path.as_posix()


def all_inputs(project: Project) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, node in project.nodes.items():
        out[name] = node_inputs(project, node, out.get(node.parent) if node.parent else None)
    return out


def stale_nodes(project: Project, lock: Lock | None) -> list[str]:
    """Nodes whose lock entry is missing or was resolved from other inputs."""
    inputs = all_inputs(project)
    if lock is None or lock.python != project.python or lock.platform != uv_platform(project):
        return list(project.nodes)
    stale = [n for n in project.nodes if n not in lock.nodes or lock.nodes[n].inputs != inputs[n]]
    stale += [n for n in lock.nodes if n not in project.nodes]
    return stale + [n for n in stale_runtime(project, lock) if n not in stale]


def stale_platform(project: Project, lock: Lock) -> bool:
    return lock.python != project.python or lock.platform != uv_platform(project)


def chain_names(project: Project, name: str) -> list[str]:
    """Root first, ending with ``name``."""
    return [*(a.name for a in reversed(project.ancestors(name))), name]


def groups_to_lock(
    project: Project, lock_nodes: Mapping[str, LockedNode], name: str
) -> dict[str, tuple[Node, RuntimeGroup]]:
    """The groups that get an entry in ``name``'s lock table.

    Which groups, and why: see :mod:`layerforge.lock.runtime`."""
    own = set(lock_nodes[name].by_name()) if name in lock_nodes else set()
    parent = project.nodes[name].parent
    above = effective_entries(lock_nodes, project, parent) if parent else {}
    out: dict[str, tuple[Node, RuntimeGroup]] = {}
    for g, (owner, group) in effective_groups(project.nodes, name).items():
        inherited = above.get(g)
        if owner.name == name or inherited is None or own & {p.name for p in inherited.packages}:
            out[g] = (owner, group)
    return out


def baked(lock_nodes: Mapping[str, LockedNode], chain: list[str]) -> dict[str, Package]:
    out: dict[str, Package] = {}
    for name in chain:
        out.update(lock_nodes[name].by_name())
    return out


def group_inputs(project: Project, group: RuntimeGroup, below: Mapping[str, Package]) -> str:
    doc = {
        "python": project.python,
        "platform": uv_platform(project),
        "index_url": project.index_url,
        "find_links": [rel(project, p) for p in project.find_links],
        "requirements": sorted(group.requirements.lines),
        "baked": sorted([p.name, p.version, p.sha256] for p in below.values()),
    }
    return digest_json(doc)


def effective_lock(lock: Lock, project: Project, name: str) -> dict[str, LockedGroup]:
    """The locked groups a node's image can install: nearest entry up the chain wins."""
    return effective_entries(lock.nodes, project, name)


def effective_entries(
    lock_nodes: Mapping[str, LockedNode], project: Project, name: str
) -> dict[str, LockedGroup]:
    out: dict[str, LockedGroup] = {}
    for node_name in reversed(chain_names(project, name)):
        locked = lock_nodes.get(node_name)
        for group in locked.runtime if locked else ():
            out.setdefault(group.name, group)
    return dict(sorted(out.items()))


def stale_runtime(project: Project, lock: Lock) -> list[str]:
    """Nodes whose runtime entries are missing, extra, or resolved from other inputs."""
    stale: list[str] = []
    for name in project.nodes:
        locked = lock.nodes.get(name)
        if locked is None:
            continue
        chain = chain_names(project, name)
        if any(n not in lock.nodes for n in chain):
            continue
        below = baked(lock.nodes, chain)
        wanted = {
            g: group_inputs(project, group, below)
            for g, (_owner, group) in groups_to_lock(project, lock.nodes, name).items()
        }
        have = {g.name: g.inputs for g in locked.runtime}
        if wanted != have:
            stale.append(name)
    return stale


def key_doc(locked: LockedNode) -> dict[str, Any]:
    """What the runtime entries add to the node's content key (nothing when there are none):
    their pins, and the launcher and CA bundle baked with them."""
    if not locked.runtime:
        return {}
    return {
        "runtime_support": runtime.support_digest(),
        "runtime": {
            g.name: [[p.name, p.version, p.sha256] for p in sorted(g.packages)]
            for g in locked.runtime
        },
    }
