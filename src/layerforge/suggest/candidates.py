"""Alternative hierarchies of a project, each a :class:`Project` transformation with the words
that say what it changes: today's; a base merged into its parent; a requirement that several
children of a base declare moved up into the base; a node re-parented onto its grandparent.

Candidates that change a node with ``system``/``run`` steps or a ``context`` are not made:
their system layer is a diff over the parent's root filesystem, which cannot be predicted
without building it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from layerforge.manifest import Project
from layerforge.manifest.model import Node
from layerforge.manifest.requirements import Requirements

TODAY = "today"


@dataclass(frozen=True)
class Edit:
    """One change to the manifest, in words and as data (``--json``)."""

    node: str
    key: str  # "requirements", "from" or "base", or "remove"
    old: object
    new: object

    def to_json(self) -> dict[str, object]:
        return {"node": self.node, "key": self.key, "old": self.old, "new": self.new}


@dataclass(frozen=True)
class Candidate:
    name: str
    project: Project
    edits: tuple[Edit, ...] = ()


def _reqs(lines: list[str]) -> Requirements:
    return Requirements(tuple(lines), "inline")


def _name(line: str) -> str:
    return canonicalize_name(Requirement(line).name)


def _plain(node: Node) -> bool:
    return not (node.system or node.run or node.context is not None or node.os_source)


def _with_nodes(project: Project, nodes: dict[str, Node]) -> Project:
    return replace(project, nodes=nodes)


def merges(project: Project) -> list[Candidate]:
    """Each base without system steps merged into its parent: its requirements and verify
    statements join the parent's, its children move onto the parent. A base whose env or
    compile_bytecode differs from its parent's is not merged: that would change the images
    of its siblings, or its own."""
    out: list[Candidate] = []
    for base in project.nodes.values():
        if base.kind != "base" or base.parent is None or not _plain(base) or base.runtime:
            continue
        parent = project.nodes[base.parent]
        if base.env or base.compile_bytecode != parent.compile_bytecode:
            continue
        lines = [*parent.requirements.lines]
        lines += [line for line in base.requirements.lines if line not in lines]
        verify = [*parent.verify, *(v for v in base.verify if v not in parent.verify)]
        nodes: dict[str, Node] = {}
        edits = [
            Edit(parent.name, "requirements", list(parent.requirements.lines), lines),
            Edit(base.name, "remove", base.name, None),
        ]
        if verify != list(parent.verify):
            edits.insert(1, Edit(parent.name, "verify", list(parent.verify), verify))
        for name, node in project.nodes.items():
            if name == base.name:
                continue
            changed = node
            if name == parent.name:
                changed = replace(node, requirements=_reqs(lines), verify=tuple(verify))
            elif node.parent == base.name:
                changed = replace(node, parent=parent.name)
                key = "from" if node.kind == "base" else "base"
                edits.append(Edit(name, key, base.name, parent.name))
            nodes[name] = changed
        out.append(
            Candidate(
                f"merge {base.name} into {parent.name}", _with_nodes(project, nodes), tuple(edits)
            )
        )
    return out


def moves_up(project: Project) -> list[Candidate]:
    """A requirement line that two or more children of a base declare, moved into the base
    (own layers are already shared by wheel, so this saves bytes only for distributions
    below layer_threshold: the predictor shows it)."""
    out: list[Candidate] = []
    for base in project.nodes.values():
        if base.kind != "base":
            continue
        children = [n for n in project.nodes.values() if n.parent == base.name]
        counts: dict[str, list[Node]] = {}
        for child in children:
            for line in child.requirements.lines:
                counts.setdefault(line, []).append(child)
        for line, holders in sorted(counts.items()):
            if len(holders) < 2 or _name(line) in _names(base):
                continue
            out.append(_move(project, base, line, holders))
    return out


def moves_down(project: Project, used: dict[str, set[str]]) -> list[Candidate]:
    """A requirement of a base whose children are all services, used (by the import scan) by
    some of them only, moved into those: one image per kind of worker instead of a universal
    one. A requirement no service is seen to use stays (dynamic imports are invisible)."""
    out: list[Candidate] = []
    for base in project.nodes.values():
        children = [n for n in project.nodes.values() if n.parent == base.name]
        if base.kind != "base" or not children or any(c.kind != "service" for c in children):
            continue
        for line in base.requirements.lines:
            name = _name(line)
            users = [c for c in children if name in used.get(c.name, set())]
            if not users or len(users) == len(children):
                continue
            nodes = dict(project.nodes)
            kept = [x for x in base.requirements.lines if x != line]
            nodes[base.name] = replace(base, requirements=_reqs(kept))
            edits = [Edit(base.name, "requirements", list(base.requirements.lines), kept)]
            for child in users:
                lines = [*child.requirements.lines, line]
                nodes[child.name] = replace(child, requirements=_reqs(lines))
                edits.append(
                    Edit(child.name, "requirements", list(child.requirements.lines), lines)
                )
            label = f"move {name} down from {base.name} to {', '.join(u.name for u in users)}"
            out.append(Candidate(label, _with_nodes(project, nodes), tuple(edits)))
    return out


def splits(project: Project, used: dict[str, set[str]]) -> list[Candidate]:
    """A base whose services fall into groups: the requirements that exactly one group of
    two or more (not all) of its services is seen to import go to a new base between the base
    and that group."""
    out: list[Candidate] = []
    for base in project.nodes.values():
        children = [n for n in project.nodes.values() if n.parent == base.name]
        if base.kind != "base" or len(children) < 3 or any(c.kind != "service" for c in children):
            continue
        groups: dict[frozenset[str], list[str]] = {}
        for line in base.requirements.lines:
            users = frozenset(c.name for c in children if _name(line) in used.get(c.name, set()))
            if 2 <= len(users) < len(children):
                groups.setdefault(users, []).append(line)
        for users, lines in sorted(groups.items(), key=lambda g: sorted(g[0])):
            out.append(_split(project, base, sorted(users), lines))
    return out


def _split(project: Project, base: Node, users: list[str], lines: list[str]) -> Candidate:
    name = f"{base.name}-{'-'.join(users)}"[:63].rstrip("-._")
    kept = [x for x in base.requirements.lines if x not in lines]
    new = Node(name=name, kind="base", parent=base.name, os_source=None, requirements=_reqs(lines))
    nodes: dict[str, Node] = {}
    for n, node in project.nodes.items():
        nodes[n] = replace(node, parent=name) if n in users else node
        if n == base.name:
            nodes[n] = replace(node, requirements=_reqs(kept))
            nodes[name] = new
    edits = [
        Edit(base.name, "requirements", list(base.requirements.lines), kept),
        Edit(name, "add", None, {"from": base.name, "requirements": lines}),
        *(Edit(u, "base", base.name, name) for u in users),
    ]
    label = f"split {base.name}: {name} for {', '.join(users)}"
    return Candidate(label, _with_nodes(project, nodes), tuple(edits))


def _names(node: Node) -> set[str]:
    return {_name(line) for line in node.requirements.lines}


def _move(project: Project, base: Node, line: str, holders: list[Node]) -> Candidate:
    nodes = dict(project.nodes)
    lines = [*base.requirements.lines, line]
    nodes[base.name] = replace(base, requirements=_reqs(lines))
    edits = [Edit(base.name, "requirements", list(base.requirements.lines), lines)]
    for child in holders:
        kept = [x for x in child.requirements.lines if x != line]
        nodes[child.name] = replace(child, requirements=_reqs(kept))
        edits.append(Edit(child.name, "requirements", list(child.requirements.lines), kept))
    name = f"move {_name(line)} up to {base.name} (from {', '.join(h.name for h in holders)})"
    return Candidate(name, _with_nodes(project, nodes), tuple(edits))


Safe = Callable[[str, str], bool]  # (node, the base it would skip) -> no service needs it


def reparents(project: Project, safe: Safe) -> list[Candidate]:
    """A node moved onto its grandparent, where ``safe`` says no service below it uses a
    distribution of the base it skips: its own requirements are re-resolved against the
    shorter chain."""
    out: list[Candidate] = []
    for node in project.nodes.values():
        parent = project.nodes.get(node.parent or "")
        if parent is None or parent.parent is None or not _plain(parent):
            continue
        if not safe(node.name, parent.name):
            continue
        grand = parent.parent
        nodes = dict(project.nodes)
        nodes[node.name] = replace(node, parent=grand)
        key = "from" if node.kind == "base" else "base"
        out.append(
            Candidate(
                f"re-parent {node.name} onto {grand}",
                _with_nodes(project, nodes),
                (Edit(node.name, key, parent.name, grand),),
            )
        )
    return out


def candidates(
    project: Project,
    safe: Safe | None = None,
    used: dict[str, set[str]] | None = None,
    limit: int = 24,
) -> list[Candidate]:
    """Today's hierarchy first, then the others; re-parents (``safe``) and moves down
    (``used``) only with the import scan of a built fleet."""
    found = [Candidate(TODAY, project), *moves_up(project), *merges(project)]
    if safe is not None:
        found += reparents(project, safe)
    if used is not None:
        found += moves_down(project, used) + splits(project, used)
    return found[:limit]


def below(project: Project, node: str) -> list[str]:
    """The services at or under ``node``."""
    out = []
    for name, n in project.nodes.items():
        if n.kind == "service" and node in {name, *(a.name for a in project.ancestors(name))}:
            out.append(name)
    return out
