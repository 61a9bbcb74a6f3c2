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

import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from packaging.utils import canonicalize_name

from layerforge import proc
from layerforge.errors import ResolveError
from layerforge.events import Event, NullReporter, Reporter
from layerforge.lock.conflicts import baked_owners, combined, diagnose, failure
from layerforge.lock.inputs import (
    baked,
    chain_names,
    effective_entries,
    effective_lock,
    group_inputs,
    groups_to_lock,
    node_platform,
)
from layerforge.lock.lockfile import Lock, LockedGroup, Package
from layerforge.lock.uv import (
    ResolveOptions,
    check_auth,
    compile_argv,
    parse_pylock,
    pinned_indexes,
    write_inputs,
    write_preferences,
)
from layerforge.manifest import Project
from layerforge.manifest.model import RuntimeGroup
from layerforge.manifest.runtime import effective_groups


def resolve_runtime(
    project: Project,
    lock: Lock,
    previous: Lock | None,
    options: ResolveOptions | None = None,
    reporter: Reporter | None = None,
) -> Lock:
    """``lock`` (baked packages resolved) with every node's runtime entries filled in."""
    out, errors, skipped = collect_runtime(project, lock, previous, options, reporter)
    if errors:
        raise combined(errors, skipped)
    return out


def collect_runtime(
    project: Project,
    lock: Lock,
    previous: Lock | None,
    options: ResolveOptions | None = None,
    reporter: Reporter | None = None,
) -> tuple[Lock, list[ResolveError], list[str]]:
    """:func:`resolve_runtime`, collecting failures instead of raising at the first: (the lock,
    every group that could not be resolved, the entries skipped because of one). Nodes missing
    from ``lock`` (they or a base failed to resolve) are left out."""
    options = options or ResolveOptions()
    reporter = reporter or NullReporter()
    errors: list[ResolveError] = []
    skipped: list[str] = []
    failed: set[tuple[str, str]] = set()  # (node, group) whose entry could not be resolved
    upgrades = {canonicalize_name(p) for p in options.upgrade_packages}
    nodes = dict(lock.nodes)
    for name in project.nodes:
        chain = chain_names(project, name)
        if any(n not in nodes for n in chain):
            continue  # it or a base did not resolve: reported by the caller
        below = baked(nodes, chain)
        old_node = previous.nodes.get(name) if previous is not None else None
        old = {g.name: g for g in old_node.runtime} if old_node else {}
        parent = project.nodes[name].parent
        above = effective_entries(nodes, project, parent) if parent else {}
        entries: list[LockedGroup] = []
        platform = node_platform(project, nodes, name)
        same_os = previous is not None and platform == node_platform(project, previous.nodes, name)
        for g, (owner, group) in groups_to_lock(project, nodes, name).items():
            inputs = group_inputs(project, group, below)
            prior = old.get(g)
            if (
                prior is not None
                and same_os
                and prior.inputs == inputs
                and not options.upgrade
                and not (upgrades & {p.name for p in prior.packages})
            ):
                entries.append(prior)
                continue
            if any((a, g) in failed for a in chain):
                failed.add((name, g))
                skipped.append(f"{g} of {project.nodes[name].section}")
                continue
            task = f"resolve:{name}:runtime:{g}"
            reporter.emit(Event("start", task, f"resolving runtime group {g} of {name}"))
            where = f"{owner.section}.runtime.{g}"
            prefer = prior or above.get(g)  # stay close to the last lock, or to the base's
            owners = baked_owners(project, nodes, chain)
            try:
                packages = _resolve_group(
                    project, chain, group, where, owners, prefer, options, platform
                )
            except ResolveError as exc:  # collected: one `lock` reports every failure
                reporter.emit(Event("finish", task, "could not resolve", data={"ok": False}))
                failed.add((name, g))
                errors.append(exc)
                continue
            reporter.emit(Event("finish", task, f"{len(packages)} packages", data={"ok": True}))
            entries.append(LockedGroup(g, inputs, packages))
        nodes[name] = replace(nodes[name], runtime=tuple(entries))
    return replace(lock, nodes=nodes), errors, skipped


def _resolve_group(
    project: Project,
    chain: list[str],
    group: RuntimeGroup,
    where: str,
    owners: dict[str, tuple[Package, str]],
    prefer: LockedGroup | None,
    options: ResolveOptions,
    platform: str | None = None,
) -> tuple[Package, ...]:
    node = project.nodes[chain[-1]]
    below = {name: pkg for name, (pkg, _owner) in owners.items()}
    lines: list[str] = []
    for name in chain:
        lines.extend(project.nodes[name].requirements.lines)
    lines.extend(group.requirements.lines)
    with tempfile.TemporaryDirectory(prefix="layerforge-runtime-") as tmp:
        work = Path(tmp)
        write_inputs(work, project, lines)
        (work / "constraints.txt").write_text("".join(p.pin + "\n" for p in below.values()))
        preferred = (
            {} if options.upgrade or prefer is None else {p.name: p for p in prefer.packages}
        )
        write_preferences(work / "pylock.toml", {**preferred, **below})
        result = proc.run(compile_argv(project, work, options, platform), cwd=work, check=False)
        if result.returncode != 0:
            check_auth(project, result.stderr, where)
            raise failure(
                f"the runtime group {where}",
                f"on top of the distributions baked in {node.section} (and its bases)",
                result.stderr,
                diagnose(project, where, group.requirements.lines, owners, options, platform),
                hint="a runtime install never changes a baked distribution: relax the group's "
                f"requirement in {where}, or change the baked pin it conflicts with",
            )
        resolved = pinned_indexes(project, parse_pylock(work / "pylock.toml", node))
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
