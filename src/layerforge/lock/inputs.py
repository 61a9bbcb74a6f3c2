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

from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from layerforge import runtime
from layerforge.errors import LockError
from layerforge.fsutil import digest_json
from layerforge.lock.lockfile import DebPackage, Lock, LockedGroup, LockedNode, Package
from layerforge.lock.uv import parse_libc, platform_tag, uv_platform
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
    doc.update(index_doc(project))
    if node.requirements.constraints:  # only when present: older inputs keep their digests
        doc["constraints"] = sorted(node.requirements.constraints)
    if node.os_source is not None:
        doc["source"] = [node.os_source.kind, node.os_source.spec, list(node.os_source.packages)]
    return digest_json(doc)


def index_doc(project: Project) -> dict[str, Any]:
    """The named indexes and sources (nothing without them, so older inputs keep their
    digests): a new URL, order or pin re-resolves."""
    if not (project.indexes or project.sources):
        return {}
    return {
        "indexes": [[i.name, i.url, i.explicit, i.default] for i in project.indexes],
        "sources": [list(pair) for pair in project.sources],
    }


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
    doc.update(index_doc(project))
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
        "runtime": {g.name: [_runtime_pin(p) for p in sorted(g.packages)] for g in locked.runtime},
    }


def system_lock_doc(rows: tuple[DebPackage, ...]) -> list[list[str]]:
    """The locked Debian packages of a system step, as they go into content keys."""
    return [[r.name, r.version, r.arch, r.sha256] for r in sorted(rows)]


def _runtime_pin(p: Package) -> list[str]:
    """A runtime pin in the key: its index too (GROUP.json names it), only when it has one."""
    return [p.name, p.version, p.sha256, *([p.index] if p.index is not None else [])]


# -- the C library: which platform a node resolves for, and what its wheels need ---------------

_LEGACY = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}


def node_platform(project: Project, lock_nodes: Mapping[str, LockedNode], name: str) -> str:
    """uv's ``--python-platform`` for ``name``: from the C library the lock recorded for its
    chain's root base (the default tag when none is known)."""
    root = chain_names(project, name)[0]
    locked = lock_nodes.get(root)
    libc = locked.source.libc if locked is not None and locked.source is not None else None
    return platform_tag(project.platforms[0], libc, project.nodes[root].section)


def wheel_needs(filename: str) -> tuple[str, int, int] | None:
    """The C library a wheel needs at least, from its platform tags: ("glibc", 2, 31) for
    ``manylinux_2_31``, ("musl", 1, 2) for ``musllinux_1_2``; None for a pure wheel (or not a
    wheel). The least over its tags: a wheel runs where any one of them does."""
    try:
        tags = parse_wheel_filename(filename)[3]
    except InvalidWheelFilename:
        return None
    needs: list[tuple[str, int, int]] = []
    for tag in tags:
        plat = tag.platform
        if plat == "any":
            return None
        family, _, rest = plat.partition("_")
        if family in _LEGACY:
            needs.append(("glibc", *_LEGACY[family]))
        elif family in ("manylinux", "musllinux"):
            major, minor = rest.split("_")[:2]
            needs.append(("glibc" if family == "manylinux" else "musl", int(major), int(minor)))
    return min(needs) if needs else None


def check_libc(
    project: Project, lock_nodes: Mapping[str, LockedNode], root: str, libc: str | None
) -> None:
    """Refuse a locked wheel (baked or in a runtime group) of a node on ``root`` that needs a
    newer C library than ``libc``, the one ``root``'s OS source has (None: unknown, nothing
    to check)."""
    if libc is None:
        return
    base = project.nodes[root]
    family, have = parse_libc(libc, base.section)
    assert base.os_source is not None
    for name in project.nodes:
        if chain_names(project, name)[0] != root or name not in lock_nodes:
            continue
        locked = lock_nodes[name]
        for pkg in [*locked.packages, *(p for g in locked.runtime for p in g.packages)]:
            needs = wheel_needs(pkg.filename)
            if needs is None or (needs[0] == family and (have is None or needs[1:] <= have)):
                continue  # (a musl root without a package database: its version is unknown)
            raise LockError(
                f"{project.nodes[name].section}: {pkg.filename} needs {needs[0]} "
                f"{needs[1]}.{needs[2]}; {base.section}'s OS source "
                f"({base.os_source.describe()}) has {libc}",
                hint="run `layerforge lock` to resolve for this OS, or use a newer OS source "
                f"in {base.section}",
            )
