"""A :class:`~layerforge.migrate.mapping.Migration` as ``layerforge.toml`` text (with a
comment naming the origin of each node), plus the requirements files it generates where a
node gathers several pip sources."""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field
from pathlib import Path

from layerforge.migrate.compose import ComposeService
from layerforge.migrate.fleet import pyproject_lines
from layerforge.migrate.mapping import Draft, Migration, node_name, port_of, rel

GENERATED_DIR = "layerforge-requirements"


@dataclass
class NodeOut:
    name: str
    kind: str  # "bases" | "services"
    origin: str
    keys: list[tuple[str, object]] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)


def q(value: object) -> str:
    """A TOML value (strings JSON-quoted, which TOML reads the same)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list | tuple):
        items = [q(v) for v in value]
        one = "[" + ", ".join(items) + "]"
        if len(one) <= 80:
            return one
        return "[\n" + "".join(f"  {i},\n" for i in items) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {q(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


def _requirements(m: Migration, node: str, lines: list[str]) -> str | list[str] | None:
    """One file as it is, inline lines, or a generated file that includes several."""
    if not lines:
        return None
    if len(lines) == 1 and lines[0].startswith("-r "):
        return lines[0][3:]
    if not any(line.startswith("-") for line in lines):
        return list(dict.fromkeys(lines))
    out = ["# written by `layerforge init --from`: the pip sources of " + node]
    for line in dict.fromkeys(lines):
        if line.startswith(("-r ", "-c ")):
            target = line[3:]
            if target.endswith("pyproject.toml"):
                out.append(f"# from {target}")
                out.extend(pyproject_lines(m.root / target))
                continue
            out.append(f"{line[:2]} {posixpath.relpath(target, GENERATED_DIR)}")
        else:
            out.append(line)
    path = f"{GENERATED_DIR}/{node}.txt"
    m.generated[path] = "\n".join(out) + "\n"
    return path


def _ordered(m: Migration) -> list[Draft]:
    done: list[Draft] = []
    left = list(m.drafts.values())
    while left:
        ready = [d for d in left if d.parent is None or d.parent in {x.name for x in done}]
        ready = ready or left[:1]
        done.extend(ready)
        left = [d for d in left if d not in ready]
    return done


def layout(m: Migration) -> list[NodeOut]:
    """Bases and services: a Dockerfile that others build on is a base; a service's own
    system/run steps, context or OS image go on a base of its own (services have none)."""
    out: list[NodeOut] = []
    for d in _ordered(m):
        origin = rel(m.root, d.doc.path)
        parent: object = d.parent if d.parent is not None else d.os_from
        if d.is_base:
            node = NodeOut(d.name, "bases", origin)
            _base_keys(m, d, node, parent, with_requirements=True)
            node.keys += _common(d)
            node.comments += d.notes
            out.append(node)
            continue
        users = d.services or []
        shared = len(users) > 1
        base_name = d.parent
        if d.system or d.run or d.context_dir or d.parent is None or shared:
            base_name = f"{d.name}-base"
            base = NodeOut(base_name, "bases", origin)
            _base_keys(m, d, base, parent, with_requirements=shared)
            if shared:
                base.keys += [("runtime", d.runtime)] if d.runtime else []
            out.append(base)
        for svc_name, svc in [(u.name, u) for u in users] if users else [(d.name, None)]:
            out.append(_service(m, d, svc_name, svc, base_name, shared=shared))
    return out


def _argv(value: tuple[str, ...] | str | None) -> list[str] | None:
    if isinstance(value, str):
        return ["/bin/sh", "-c", value]
    return None if value is None else list(value)


def _service(
    m: Migration,
    d: Draft,
    name: str,
    svc: ComposeService | None,
    base: str | None,
    *,
    shared: bool,
) -> NodeOut:
    node = NodeOut(_service_name(name, base), "services", rel(m.root, d.doc.path))
    node.keys.append(("base", base))
    req = None if shared else _requirements(m, node.name, d.req_lines)
    node.keys += [("requirements", req)] if req is not None else []
    node.keys += [("source", d.source)] if d.source is not None else []
    node.keys += [("workdir", d.workdir)] if d.workdir and d.workdir != "/app" else []
    command = _argv(svc.command if svc is not None and svc.command is not None else d.command)
    entry = _argv(svc.entrypoint if svc is not None and svc.entrypoint else d.entrypoint)
    node.keys += [("entrypoint", entry)] if entry is not None else []
    node.keys += [("command", command)] if command is not None else []
    env = {**d.env, **(svc.environment if svc is not None else {})}
    node.keys += [("env", env)] if env else []
    node.keys += [("labels", d.labels)] if d.labels else []
    node.keys += [("verify", d.verify)] if d.verify else []
    node.keys += [("runtime", d.runtime)] if d.runtime and not shared else []
    node.comments += d.notes
    expose = [*d.expose]
    for port in svc.ports if svc is not None else []:
        expose += [p for p in [port_of(port)] if p not in expose]
    node.keys += [("expose", expose)] if expose else []
    node.keys += [("healthcheck", d.healthcheck)] if d.healthcheck is not None else []
    if svc is not None and svc.user:
        node.comments.append(f'user = "{svc.user}"')
    return node


def _service_name(name: str, base: str | None) -> str:
    out = node_name(name)
    return f"{out}-svc" if out == base else out


def _base_keys(
    m: Migration, d: Draft, node: NodeOut, parent: object, *, with_requirements: bool
) -> None:
    node.keys.append(("from", parent))
    node.keys += [("system", d.system)] if d.system else []
    node.keys += [("context", d.context_dir)] if d.context_dir else []
    node.keys += [("run", d.run)] if d.run else []
    if with_requirements:
        req = _requirements(m, node.name, d.req_lines)
        node.keys += [("requirements", req)] if req is not None else []
    if d.is_base and d.runtime:
        node.keys.append(("runtime", d.runtime))


def _common(d: Draft) -> list[tuple[str, object]]:
    keys: list[tuple[str, object]] = []
    keys += [("env", d.env)] if d.env else []
    keys += [("labels", d.labels)] if d.labels else []
    keys += [("verify", d.verify)] if d.verify else []
    return keys


def manifest_text(m: Migration, name: str) -> str:
    lines = [
        "# layerforge.toml, written by `layerforge init --from` from the Dockerfiles of this",
        "# repository. Every instruction and where it went: layerforge-migration.md.",
        "# Reference: docs/manifest.md.  Next: `layerforge lock`, then `layerforge build`.",
        "",
        "[project]",
        f"name = {q(name)}",
        f"python = {q(m.python)}",
    ]
    if m.find_links:
        lines.append(f"find_links = {q(m.find_links)}")
    for index_name, url in m.indexes:
        lines += ["", "[[project.index]]", f"name = {q(index_name)}", f"url = {q(url)}"]
        if index_name == m.default_index:
            lines.append("default = true")
    for node in layout(m):
        lines += ["", f"# from {node.origin}", f"[{node.kind}.{node.name}]"]
        for key, value in node.keys:
            if key == "from" and isinstance(value, dict):
                lines.append(f"from = {{ debootstrap = {q(value['debootstrap'])} }}")
            elif key == "from":
                lines.append(f"from = {q(value)}")
            else:
                lines.append(f"{key} = {q(value)}")
        for comment in dict.fromkeys(node.comments):
            lines.append(f"# {comment}   (set by hand: see layerforge-migration.md)")
    return "\n".join(lines) + "\n"


def write_generated(m: Migration) -> list[Path]:
    """The generated requirements files (never over an existing file)."""
    out: list[Path] = []
    for path, text in m.generated.items():
        target = m.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        out.append(target)
    return out
