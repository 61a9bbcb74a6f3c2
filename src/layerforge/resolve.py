"""Resolve every node's requirements with uv into a :class:`Lock`.

Each node is resolved for the target Python and platform with its ancestors' requirements
and *constrained* by their locked pins: a base pin is never changed by a child. Nodes whose
inputs did not change keep their locked packages; ``upgrade`` re-resolves everything and
``upgrade_packages`` lets only those names move.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from layerforge import proc
from layerforge.errors import ResolveError
from layerforge.events import Event, NullReporter, Reporter
from layerforge.lockfile import Lock, LockedNode, Package
from layerforge.manifest import Node, Project

PLATFORMS = {"linux/amd64": "x86_64-manylinux_2_28"}


def uv_platform(project: Project) -> str:
    return PLATFORMS[project.platforms[0]]


@dataclass(frozen=True)
class ResolveOptions:
    upgrade: bool = False
    upgrade_packages: tuple[str, ...] = ()


def node_inputs(project: Project, node: Node, parent_inputs: str | None) -> str:
    """Digest of everything a node's resolution depends on (not its results)."""
    doc: dict[str, Any] = {
        "python": project.python,
        "platform": uv_platform(project),
        "index_url": project.index_url,
        "find_links": [_rel(project, p) for p in project.find_links],
        "requirements": sorted(node.requirements.lines),
        "parent": parent_inputs,
    }
    if node.os_source is not None:
        doc["source"] = [node.os_source.kind, node.os_source.spec, list(node.os_source.packages)]
    raw = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def _rel(project: Project, path: Path) -> str:
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
    from layerforge.runtime_lock import stale_runtime  # noqa: PLC0415 - imports this module

    return stale + [n for n in stale_runtime(project, lock) if n not in stale]


def resolve(
    project: Project,
    previous: Lock | None,
    options: ResolveOptions | None = None,
    reporter: Reporter | None = None,
) -> Lock:
    options = options or ResolveOptions()
    reporter = reporter or NullReporter()
    inputs = all_inputs(project)
    usable = previous if previous is not None and not stale_platform(project, previous) else None
    upgrades = {canonicalize_name(p) for p in options.upgrade_packages}
    nodes: dict[str, LockedNode] = {}
    moved: set[str] = set()
    for name, node in project.nodes.items():
        old = usable.nodes.get(name) if usable else None
        chain = [a.name for a in reversed(project.ancestors(name))]
        keep = (
            old is not None
            and old.inputs == inputs[name]
            and not options.upgrade
            and not (upgrades & set(old.by_name()))
            and not any(a in moved for a in chain)
        )
        if keep and old is not None:
            nodes[name] = old
            continue
        above = Lock(project.python, uv_platform(project), nodes).packages_with_ancestors(chain)
        task = f"resolve:{name}"
        reporter.emit(Event("start", task, f"resolving {node.section}"))
        _check_against_ancestors(project, node, nodes, chain)
        packages = _resolve_node(project, node, chain, above, old, options)
        reporter.emit(Event("finish", task, f"{len(packages)} packages", data={"ok": True}))
        nodes[name] = LockedNode(inputs[name], packages, _source_fields(node))
        if old is None or old.packages != packages:
            moved.add(name)
    from layerforge.runtime_lock import resolve_runtime  # noqa: PLC0415 - imports this module

    return resolve_runtime(project, Lock(project.python, uv_platform(project), nodes), usable,
                           options, reporter)  # fmt: skip


def stale_platform(project: Project, lock: Lock) -> bool:
    return lock.python != project.python or lock.platform != uv_platform(project)


def _source_fields(node: Node) -> tuple[tuple[str, str], ...]:
    if node.os_source is None:
        return ()
    src = node.os_source
    fields = [("kind", src.kind), ("spec", src.spec)]
    if src.packages:
        fields.append(("packages", ",".join(src.packages)))
    return tuple(fields)


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
) -> tuple[Package, ...]:
    lines: list[str] = []
    for name in [*chain, node.name]:
        lines.extend(project.nodes[name].requirements.lines)
    if not node.requirements.lines:
        return ()
    with tempfile.TemporaryDirectory(prefix="layerforge-resolve-") as tmp:
        work = Path(tmp)
        (work / "requirements.in").write_text("\n".join(lines) + "\n")
        (work / "constraints.txt").write_text("".join(p.pin + "\n" for p in above.values()))
        preferred = {} if options.upgrade or old is None else old.by_name()
        _write_preferences(work / "pylock.toml", {**preferred, **above})
        argv = _uv_argv(project, work, options)
        result = proc.run(argv, cwd=work, check=False)
        if result.returncode != 0:
            raise ResolveError(
                f"uv could not resolve {node.section} "
                f"(with the pins of {', '.join(chain) or 'no ancestors'}):\n"
                f"{proc.tail(result.stderr)}",
                hint="loosen the conflicting requirement, or pin it in the base that owns it",
            )
        resolved = _parse_pylock(work / "pylock.toml", node)
    for name, pkg in above.items():
        got = resolved.get(name)
        if got is not None and got.version != pkg.version:  # pragma: no cover - uv honours -c
            raise ResolveError(f"{node.section}: uv moved the ancestor pin {pkg.pin}")
    return tuple(sorted(p for n, p in resolved.items() if n not in above))


def _uv_argv(project: Project, work: Path, options: ResolveOptions) -> list[str]:
    argv = [
        proc.find_uv(),
        "pip",
        "compile",
        "requirements.in",
        "--constraint",
        "constraints.txt",
        "--python-version",
        project.python,
        "--python-platform",
        uv_platform(project),
        "--format",
        "pylock.toml",
        "--output-file",
        "pylock.toml",
        "--quiet",
        "--no-header",
        "--only-binary",
        ":all:",
    ]
    if project.index_url:
        argv += ["--index-url", project.index_url]
    for link in project.find_links:
        argv += ["--find-links", str(link)]
    for name in options.upgrade_packages:
        argv += ["--upgrade-package", name]
    del work
    return argv


def _write_preferences(path: Path, packages: dict[str, Package]) -> None:
    if not packages:
        return
    body = ['lock-version = "1.0"', 'created-by = "layerforge"']
    for pkg in sorted(packages.values()):
        body += [
            "",
            "[[packages]]",
            f"name = {json.dumps(pkg.name)}",
            f"version = {json.dumps(pkg.version)}",
        ]
    path.write_text("\n".join(body) + "\n")


def _parse_pylock(path: Path, node: Node) -> dict[str, Package]:
    data = tomllib.loads(path.read_text())
    out: dict[str, Package] = {}
    for raw in data.get("packages", []):
        name = canonicalize_name(str(raw["name"]))
        wheels: Sequence[dict[str, Any]] = raw.get("wheels", [])
        if not wheels:
            raise ResolveError(
                f"{node.section}: {name} {raw.get('version')} has no wheel for this Python "
                "and platform; layerforge installs wheels only",
                hint="pick a version that publishes a manylinux wheel, or build one into a "
                "find_links directory",
            )
        wheel = wheels[0]
        url = str(wheel.get("url") or wheel.get("path") or "")
        out[name] = Package(
            name=name,
            version=str(raw["version"]),
            filename=unquote(Path(urlparse(url).path).name),
            url=url,
            sha256=str(wheel["hashes"]["sha256"]),
            size=int(wheel.get("size", 0)),
        )
    return out
