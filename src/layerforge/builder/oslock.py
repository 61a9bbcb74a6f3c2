"""The Debian packages of the ``system`` steps, for ``lock`` (lock version 2).

A base's system step names packages (``system`` plus ``build_system``); apt picks their
versions and dependencies. ``lock`` asks apt what it would install (``apt-get install -s`` in
the sandbox, over the root's locked OS layer, after ``apt-get update``) and records each
package it names with its .deb (sha256, pool path, size) from the archive's index, so that
``build`` installs exactly those (:func:`layerforge.sandbox.system.steps`, from a local
repository of the .debs) and ``plan`` can say which ones moved.

Only bases whose root is a debootstrap root with locked packages get rows (the archive is
the one the root names). The simulation installs the system packages of the whole chain, so
a child's rows are what it adds beyond its ancestors'. ``run`` steps are not locked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from layerforge.errors import SourceError
from layerforge.events import Event, Reporter
from layerforge.lock.inputs import chain_names
from layerforge.lock.lockfile import DebPackage, Lock, LockedNode
from layerforge.lock.uv import ResolveOptions
from layerforge.manifest import Node, Project
from layerforge.sandbox.system import Sandbox, simulate
from layerforge.sources import debian
from layerforge.sources.base import BaseImage


def system_for(node: Node) -> tuple[str, ...]:
    """The apt specs a node's system step installs, in the step's order."""
    return (*node.system, *(p for p in node.build_system if p not in node.system))


def stale_system(project: Project, lock: Lock) -> list[str]:
    """Nodes on a root with locked Debian packages whose system rows were resolved for other
    apt specs than the manifest names now (or not at all)."""
    out = []
    for name, node in project.nodes.items():
        root = lock.nodes.get(chain_names(project, name)[0])
        locked = lock.nodes.get(name)
        if root is None or locked is None or root.source is None or not root.source.os:
            continue
        if locked.system_for != system_for(node):
            out.append(name)
    return out


def lock_system(
    project: Project,
    lock: Lock,
    previous: Lock | None,
    images: Mapping[str, BaseImage],
    sandbox: Sandbox,
    options: ResolveOptions,
) -> Lock:
    """``lock`` with the system rows of every base on a locked debootstrap root: kept from
    ``previous`` while the specs and the root's packages are unchanged (and no upgrade is
    asked for), else asked of apt."""
    nodes = dict(lock.nodes)
    indexes: dict[str, list[dict[str, str]]] = {}
    fresh = options.upgrade or options.upgrade_os
    for name, node in project.nodes.items():
        chain = chain_names(project, name)
        root = nodes[chain[0]].source
        wanted = system_for(node)
        if root is None or not root.os or not wanted or chain[0] not in images:
            nodes[name] = replace(nodes[name], system=(), system_for=())
            continue
        old = previous.nodes.get(name) if previous is not None else None
        old_root = previous.nodes.get(chain[0]) if previous is not None else None
        old_pin = old_root.source if old_root is not None else None
        same_root = old_pin is not None and old_pin.os == root.os
        if old is not None and old.system_for == wanted and same_root and not fresh:
            nodes[name] = replace(nodes[name], system=old.system, system_for=wanted)
            continue
        rows = _resolve(project, nodes, chain, images[chain[0]], sandbox, indexes)
        nodes[name] = replace(nodes[name], system=rows, system_for=wanted)
    return replace(lock, nodes=nodes)


def _resolve(
    project: Project,
    nodes: dict[str, LockedNode],
    chain: list[str],
    image: BaseImage,
    sandbox: Sandbox,
    indexes: dict[str, list[dict[str, str]]],
) -> tuple[DebPackage, ...]:
    node = project.nodes[chain[-1]]
    root = nodes[chain[0]].source
    assert root is not None
    specs: list[str] = []
    for name in chain:
        specs += [s for s in system_for(project.nodes[name]) if s not in specs]
    reporter: Reporter = sandbox.reporter
    task = f"lock-system:{node.name}"
    reporter.emit(Event("start", task, f"resolving {node.section}.system with apt"))
    output = simulate(specs, image.layers, image.env, sandbox, node.section)
    above = {r.name for n in chain[:-1] for r in nodes[n].system}
    wanted = [i for i in debian.parse_inst(output) if i[0] not in above]
    suite = root.spec
    if suite not in indexes:
        mirror = debian.default_mirror()
        release = debian.fetch_release(mirror, suite, node.section)
        indexes[suite] = debian.fetch_packages(mirror, release, debian.host_arch(), node.section)
    rows, missing = debian.rows_for(wanted, indexes[suite], suite)
    if missing:
        raise SourceError(
            f"{node.section}.system: apt would install {', '.join(missing[:5])}, which the "
            f"archive's {suite} index does not hold",
            hint="the archive is being updated: run `layerforge lock` again in a few minutes",
        )
    reporter.emit(Event("finish", task, f"{len(rows)} Debian packages", data={"ok": True}))
    return rows
