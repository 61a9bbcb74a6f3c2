"""Lock runtime groups: resolve each on top of everything baked in its node.

A group is resolved with uv from the baked requirement lines of the node and its ancestors
plus the group's own lines, *constrained* by every baked pin (``--constraint``): a runtime
install never changes a baked distribution. The group's entry keeps only the distributions
beyond the baked ones, and an ``inputs`` digest of what it was resolved from (its lines and
every baked pin), so ``lock --check`` sees a group go stale on its own.

Which nodes carry an entry for a group: the node that declares it, and each descendant that
bakes a distribution the group (as its nearest ancestor locked it) would install too; that
descendant's entry is resolved against its own baked set, so the group never overwrites one
of its pins. Every other descendant uses its nearest ancestor's entry as is: the group's
distributions and the descendant's share no name, so they install side by side (the
group's own dependencies are all in the group or baked below it).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from layerforge import proc
from layerforge.errors import ResolveError
from layerforge.events import Event, NullReporter, Reporter
from layerforge.lockfile import Lock, LockedGroup, LockedNode, Package
from layerforge.manifest import Node, Project
from layerforge.manifest.model import RuntimeGroup
from layerforge.manifest.runtime import effective_groups
from layerforge.resolve import (
    ResolveOptions,
    _parse_pylock,
    _rel,
    _uv_argv,
    _write_preferences,
    uv_platform,
)


def chain_names(project: Project, name: str) -> list[str]:
    """Root first, ending with ``name``."""
    return [*(a.name for a in reversed(project.ancestors(name))), name]


def groups_to_lock(
    project: Project, lock_nodes: Mapping[str, LockedNode], name: str
) -> dict[str, tuple[Node, RuntimeGroup]]:
    """The groups that get an entry in ``name``'s lock table (see the module docstring)."""
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
        "find_links": [_rel(project, p) for p in project.find_links],
        "requirements": sorted(group.requirements.lines),
        "baked": sorted([p.name, p.version, p.sha256] for p in below.values()),
    }
    raw = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return "sha256:" + hashlib.sha256(raw).hexdigest()


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


def resolve_runtime(
    project: Project,
    lock: Lock,
    previous: Lock | None,
    options: ResolveOptions | None = None,
    reporter: Reporter | None = None,
) -> Lock:
    """``lock`` (baked packages resolved) with every node's runtime entries filled in."""
    options = options or ResolveOptions()
    reporter = reporter or NullReporter()
    upgrades = {canonicalize_name(p) for p in options.upgrade_packages}
    nodes = dict(lock.nodes)
    for name in project.nodes:
        chain = chain_names(project, name)
        below = baked(nodes, chain)
        old_node = previous.nodes.get(name) if previous is not None else None
        old = {g.name: g for g in old_node.runtime} if old_node else {}
        parent = project.nodes[name].parent
        above = effective_entries(nodes, project, parent) if parent else {}
        entries: list[LockedGroup] = []
        for g, (owner, group) in groups_to_lock(project, nodes, name).items():
            inputs = group_inputs(project, group, below)
            prior = old.get(g)
            if (
                prior is not None
                and prior.inputs == inputs
                and not options.upgrade
                and not (upgrades & {p.name for p in prior.packages})
            ):
                entries.append(prior)
                continue
            task = f"resolve:{name}:runtime:{g}"
            reporter.emit(Event("start", task, f"resolving runtime group {g} of {name}"))
            where = f"{owner.section}.runtime.{g}"
            prefer = prior or above.get(g)  # stay close to the last lock, or to the base's
            packages = _resolve_group(project, chain, group, where, below, prefer, options)
            reporter.emit(Event("finish", task, f"{len(packages)} packages", data={"ok": True}))
            entries.append(LockedGroup(g, inputs, packages))
        nodes[name] = replace(nodes[name], runtime=tuple(entries))
    return replace(lock, nodes=nodes)


def _resolve_group(
    project: Project,
    chain: list[str],
    group: RuntimeGroup,
    where: str,
    below: dict[str, Package],
    prefer: LockedGroup | None,
    options: ResolveOptions,
) -> tuple[Package, ...]:
    node = project.nodes[chain[-1]]
    lines: list[str] = []
    for name in chain:
        lines.extend(project.nodes[name].requirements.lines)
    lines.extend(group.requirements.lines)
    with tempfile.TemporaryDirectory(prefix="layerforge-runtime-") as tmp:
        work = Path(tmp)
        (work / "requirements.in").write_text("\n".join(lines) + "\n")
        (work / "constraints.txt").write_text("".join(p.pin + "\n" for p in below.values()))
        preferred = (
            {} if options.upgrade or prefer is None else {p.name: p for p in prefer.packages}
        )
        _write_preferences(work / "pylock.toml", {**preferred, **below})
        result = proc.run(_uv_argv(project, work, options), cwd=work, check=False)
        if result.returncode != 0:
            raise ResolveError(
                f"uv could not resolve the runtime group {where} on top of the distributions "
                f"baked in {node.section} (and its bases):\n{proc.tail(result.stderr)}",
                hint="a runtime install never changes a baked distribution: relax the group's "
                f"requirement in {where}, or change the baked pin it conflicts with",
            )
        resolved = _parse_pylock(work / "pylock.toml", node)
    for name, pkg in below.items():
        got = resolved.get(name)
        if got is not None and got.version != pkg.version:  # pragma: no cover - uv honours -c
            raise ResolveError(f"{where}: uv moved the baked pin {pkg.pin}")
    return tuple(sorted(p for n, p in resolved.items() if n not in below))


@dataclass(frozen=True)
class GroupSummary:
    """A runtime group as ``plan`` and ``report`` show it."""

    node: str  # the node whose image can install it
    group: str
    declared_by: str  # section of the node that declares it
    distributions: int
    size: int  # wheel bytes, not baked

    def to_json(self) -> dict[str, object]:
        return {
            "node": self.node,
            "group": self.group,
            "declared_by": self.declared_by,
            "distributions": self.distributions,
            "size": self.size,
        }


def summaries(project: Project, lock: Lock, names: list[str] | None = None) -> list[GroupSummary]:
    """Every runtime group each node's image can install (own and inherited)."""
    out: list[GroupSummary] = []
    for name in names or list(project.nodes):
        owners = effective_groups(project.nodes, name)
        for g, group in effective_lock(lock, project, name).items():
            out.append(
                GroupSummary(
                    name,
                    g,
                    owners[g][0].section if g in owners else "?",
                    len(group.packages),
                    sum(p.size for p in group.packages),
                )
            )
    return out


def key_doc(locked: LockedNode) -> dict[str, Any]:
    """What the runtime entries add to the node's content key (nothing when there are none)."""
    if not locked.runtime:
        return {}
    return {
        "runtime": {
            g.name: [[p.name, p.version, p.sha256] for p in sorted(g.packages)]
            for g in locked.runtime
        }
    }
