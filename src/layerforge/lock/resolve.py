"""Resolve every node's requirements with uv into a :class:`Lock`.

Each node is resolved for the target Python and platform with its ancestors' requirements
and *constrained* by their locked pins: a base pin is never changed by a child. Nodes whose
inputs did not change keep their locked packages; ``upgrade`` re-resolves everything and
``upgrade_packages`` lets only those names move.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from layerforge.errors import ResolveError
from layerforge.events import Event, NullReporter, Reporter
from layerforge.lock.conflicts import baked_owners, combined, diagnose, failure
from layerforge.lock.inputs import all_inputs, check_libc, node_platform, stale_platform
from layerforge.lock.lockfile import Lock, LockedNode, Package, SourcePin
from layerforge.lock.runtime import collect_runtime
from layerforge.lock.uv import (
    ResolveOptions,
    check_auth,
    compile_argv,
    locked_indexes,
    parse_pylock,
    pinned_indexes,
    run_compile,
    uv_platform,
    write_inputs,
    write_preferences,
)
from layerforge.manifest import Node, Project


def resolve(
    project: Project,
    previous: Lock | None,
    options: ResolveOptions | None = None,
    reporter: Reporter | None = None,
    pins: Mapping[str, SourcePin] | None = None,
) -> Lock:
    """``pins``: the OS source of each root base as materialized (identity, C library), which
    decides the platform its chain resolves for; without it, the pins name only the source."""
    options = options or ResolveOptions()
    reporter = reporter or NullReporter()
    inputs = all_inputs(project)
    usable = previous if previous is not None and not stale_platform(project, previous) else None
    upgrades = {canonicalize_name(p) for p in options.upgrade_packages}
    nodes: dict[str, LockedNode] = {}
    moved: set[str] = set()
    failed: set[str] = set()  # nodes that did not resolve: their descendants are skipped
    errors: list[ResolveError] = []
    skipped: list[str] = []
    for name, node in project.nodes.items():
        old = usable.nodes.get(name) if usable else None
        chain = [a.name for a in reversed(project.ancestors(name))]
        if failed & set(chain):
            failed.add(name)
            skipped.append(node.section)
            continue
        source = (pins or {}).get(name) or _source_pin(node) if node.os_source else None
        if source is not None:  # a root base: its C library decides the platform of its chain
            nodes[name] = LockedNode(inputs[name], (), source)
        platform = node_platform(project, nodes, name)
        keep = (
            old is not None
            and usable is not None
            and old.inputs == inputs[name]
            and platform == node_platform(project, usable.nodes, name)
            and not options.upgrade
            and not (upgrades & set(old.by_name()))
            and not any(a in moved for a in chain)
        )
        if keep and old is not None:
            nodes[name] = replace(old, source=source)
            continue
        above = Lock(project.python, uv_platform(project), nodes).packages_with_ancestors(chain)
        task = f"resolve:{name}"
        reporter.emit(Event("start", task, f"resolving {node.section}"))
        try:
            _check_against_ancestors(project, node, nodes, chain)
            owners = baked_owners(project, nodes, chain)
            packages = _resolve_node(project, node, chain, above, old, options, owners, platform)
        except ResolveError as exc:  # collected: one `lock` reports every failure
            reporter.emit(Event("finish", task, "could not resolve", data={"ok": False}))
            failed.add(name)
            errors.append(exc)
            continue
        reporter.emit(Event("finish", task, f"{len(packages)} packages", data={"ok": True}))
        nodes[name] = LockedNode(inputs[name], packages, source)
        if old is None or old.packages != packages:
            moved.add(name)
    lock, group_errors, group_skipped = collect_runtime(
        project,
        Lock(project.python, uv_platform(project), nodes, locked_indexes(project)),
        usable,
        options,
        reporter,
    )
    if errors or group_errors:
        raise combined([*errors, *group_errors], [*skipped, *group_skipped])
    for name, locked in lock.nodes.items():
        if locked.source is not None:
            check_libc(project, lock.nodes, name, locked.source.libc)
    return lock


def _source_pin(node: Node) -> SourcePin | None:
    """What the manifest names (the identity is added by `lock`, once materialized)."""
    src = node.os_source
    return None if src is None else SourcePin(src.kind, src.spec, tuple(src.packages))


def _check_against_ancestors(
    project: Project, node: Node, locked: dict[str, LockedNode], chain: list[str]
) -> None:
    for line in node.requirements.lines:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        for ancestor in reversed(chain):
            pkg = locked[ancestor].by_name().get(name)
            if pkg is not None and not req.specifier.contains(pkg.version, prereleases=True):
                owner = project.nodes[ancestor]
                raise ResolveError(
                    f"{node.section} requires {line!r}, but {owner.section} has "
                    f"{pkg.name}=={pkg.version} locked",
                    hint=f"a base pin is never changed by a child: move the requirement to "
                    f"{owner.section} (then `layerforge lock`), or relax it in {node.section}",
                )


def _resolve_node(
    project: Project,
    node: Node,
    chain: list[str],
    above: dict[str, Package],
    old: LockedNode | None,
    options: ResolveOptions,
    owners: dict[str, tuple[Package, str]],
    platform: str | None = None,
) -> tuple[Package, ...]:
    lines: list[str] = []
    for name in [*chain, node.name]:
        lines.extend(project.nodes[name].requirements.lines)
    if not node.requirements.lines:
        return ()
    with tempfile.TemporaryDirectory(prefix="layerforge-resolve-") as tmp:
        work = Path(tmp)
        write_inputs(work, project, lines)
        constraints = [p.pin for p in above.values()]
        for name in [*chain, node.name]:
            constraints.extend(project.nodes[name].requirements.constraints)
        (work / "constraints.txt").write_text("".join(c + "\n" for c in constraints))
        preferred = {} if options.upgrade or old is None else old.by_name()
        write_preferences(work / "pylock.toml", {**preferred, **above})
        argv = compile_argv(project, work, options, platform)
        result = run_compile(argv, work)
        if result.returncode != 0:
            check_auth(project, result.stderr, node.section)
            raise failure(
                node.section,
                f"(with the pins of {', '.join(chain) or 'no ancestors'})",
                result.stderr,
                diagnose(project, node.section, node.requirements.lines, owners, options, platform),
                hint="loosen the conflicting requirement, or pin it in the base that owns it",
            )
        resolved = pinned_indexes(project, parse_pylock(work / "pylock.toml", node))
    for name, pkg in above.items():
        got = resolved.get(name)
        if got is not None and got.version != pkg.version:  # pragma: no cover - uv honours -c
            raise ResolveError(f"{node.section}: uv moved the ancestor pin {pkg.pin}")
    return tuple(sorted(p for n, p in resolved.items() if n not in above))
