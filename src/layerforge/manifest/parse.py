"""Validated manifest data -> :class:`~layerforge.manifest.model.Project`: the OS source
of each root base, each node's requirements, runtime groups, directories and pins, checked
against the files they name (on every load: none of this is cached).

Every error is a :class:`ManifestError` naming the file, the dotted key and the fix.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from layerforge.errors import ManifestError
from layerforge.manifest import graph, nonroot
from layerforge.manifest.confine import Confinement, confinement
from layerforge.manifest.indexes import read_indexes
from layerforge.manifest.messages import did_you_mean
from layerforge.manifest.model import (
    NAME_RE,
    PROJECT_NAME_RE,
    Node,
    OSSource,
    Project,
    RuntimeGroup,
    project_name_suggestion,
)
from layerforge.manifest.requirements import (
    Requirements,
    check_index_options,
    read_requirements,
)
from layerforge.manifest.runtime import check_runtime, read_groups
from layerforge.sizes import parse_size


def _tuple(value: Any) -> tuple[str, ...]:
    return tuple(value) if value is not None else ()


def build_project(data: dict[str, Any], path: Path) -> Project:
    """Validated manifest data (see load.py) -> Project, checking the files it names."""
    shown = str(path)
    root = path.parent
    p = data["project"]
    _check_project_name(p["name"], shown)
    confine = confinement(root, _tuple(p.get("allow_outside")), file=shown)
    bases: dict[str, Any] = data["bases"]
    services: dict[str, Any] = data["services"]
    _check_names(bases, services, shown)
    nodes: dict[str, Node] = {}
    for name, base in bases.items():
        nodes[name] = _base_node(name, base, bases, confine, shown)
    for name, svc in services.items():
        nodes[name] = _service_node(name, svc, bases, confine, shown, services=services)
    ordered = nonroot_inherit(graph.topological(nodes, shown))
    _check_pins(ordered, shown)
    check_runtime(ordered, shown)
    _check_repositories(ordered, shown)
    indexes, sources = read_indexes(p, shown)
    find_links = _find_links(_tuple(p["find_links"]), confine, shown)
    default = next((i.url for i in indexes if i.default), p["index_url"])
    for node in ordered.values():
        check_index_options(
            node.requirements,
            index_urls=tuple(i.url for i in indexes),
            default_url=default,
            find_links=find_links,
        )
    return Project(
        name=p["name"],
        python=p["python"],
        platforms=_tuple(p["platforms"]),
        root=root,
        manifest=path,
        nodes=ordered,
        registry=p["registry"],
        version=p["version"],
        version_labels=p["version_labels"],
        layer_threshold=parse_size(p["layer_threshold"]),
        compression=p["compression"],
        index_url=p["index_url"],
        find_links=find_links,
        source_date_epoch=p["source_date_epoch"],
        indexes=indexes,
        sources=sources,
        cache_max=None if p["cache_max"] is None else parse_size(p["cache_max"]),
    )


def _check_project_name(name: str, shown: str) -> None:
    if not PROJECT_NAME_RE.match(name):
        raise ManifestError(
            f"{name!r} is not a valid image repository name",
            file=shown,
            key="project.name",
            hint="use lowercase letters and digits, separated by '.', '_' or '-', "
            f"e.g. name = {project_name_suggestion(name)!r}",
        )


def _check_names(bases: dict[str, Any], services: dict[str, Any], shown: str) -> None:
    for section, names in (("bases", bases), ("services", services)):
        for name in names:
            if not NAME_RE.match(name):
                raise ManifestError(
                    f"{name!r} is not a valid image name",
                    file=shown,
                    key=f"{section}.{name}",
                    hint="use lowercase letters, digits, '.', '_' or '-', starting with a letter "
                    "or digit",
                )
    both = set(bases) & set(services)
    if both:
        name = sorted(both)[0]
        raise ManifestError(
            f"{name!r} is both a base and a service; image names must be unique",
            file=shown,
            key=f"services.{name}",
            hint="rename one of them",
        )
    if not bases:
        raise ManifestError(
            "no [bases.*] section: a fleet needs at least one base",
            file=shown,
            key="bases",
            hint='add e.g. [bases.cpu] with from = { debootstrap = "bookworm" }',
        )


def _find_links(links: tuple[str, ...], confine: Confinement, shown: str) -> tuple[Path, ...]:
    out: list[Path] = []
    for i, written in enumerate(links):
        key = f"project.find_links[{i}]"
        path = confine.resolve(
            written, base=confine.root, file=shown, key=key, what="find_links directory"
        )
        if not path.is_dir():
            raise ManifestError(
                f"find_links directory {written!r} does not exist (looked for {path})",
                file=shown,
                key=key,
                hint="point find_links at directories of wheels, relative to layerforge.toml",
            )
        out.append(path)
    return tuple(out)


def _parse_from(
    value: str | dict[str, Any], bases: dict[str, Any], confine: Confinement, shown: str, key: str
) -> tuple[str | None, OSSource | None]:
    root = confine.root
    if isinstance(value, dict):
        return None, OSSource(
            "debootstrap",
            value["debootstrap"],
            packages=_tuple(value["packages"]),
            variant=value["variant"],
        )
    if value in bases:
        return value, None
    if value.startswith("rootfs:"):
        spec = value.removeprefix("rootfs:")
        path = confine.resolve(spec, base=root, file=shown, key=key, what="root filesystem")
        if not path.exists():
            raise ManifestError(
                f"root filesystem {spec!r} does not exist (looked for {path})",
                file=shown,
                key=key,
                hint="point rootfs: at a directory or a .tar/.tar.gz of a root filesystem",
            )
        return None, OSSource("rootfs", spec, path=path)
    if value.startswith("oci:"):
        spec = value.removeprefix("oci:")
        layout, _, tag = spec.partition(":")
        path = (root / layout).resolve()
        if not (path / "oci-layout").is_file():
            raise ManifestError(
                f"{layout!r} is not an OCI image layout (no oci-layout file in {path})",
                file=shown,
                key=key,
                hint="use oci:DIR[:TAG] with a directory written by skopeo, umoci or layerforge",
            )
        return None, OSSource("oci", spec, path=path, tag=tag or None)
    if any(c in value for c in ":/@."):
        return None, OSSource("registry", value)
    raise ManifestError(
        f"no base named {value!r}{did_you_mean(value, bases)}",
        file=shown,
        key=key,
        hint="name a base defined under [bases], or an OS source such as "
        "'rootfs:DIR', 'oci:DIR:TAG' or { debootstrap = 'bookworm' }",
    )


def _requirements(node: dict[str, Any], confine: Confinement, shown: str, key: str) -> Requirements:
    value = node["requirements"]
    value = tuple(value) if isinstance(value, list) else value
    return read_requirements(
        value, root=confine.root, manifest=shown, key=f"{key}.requirements", confine=confine
    )


def _runtime(
    node: dict[str, Any], confine: Confinement, shown: str, key: str
) -> tuple[RuntimeGroup, ...]:
    return read_groups(
        node["runtime"], root=confine.root, manifest=shown, key=f"{key}.runtime", confine=confine
    )


def _common(node: dict[str, Any]) -> dict[str, Any]:
    return {
        "env": tuple(sorted(node["env"].items())),
        "labels": tuple(sorted(node["labels"].items())),
        "verify": _tuple(node["verify"]),
        "max_size": None if node["max_size"] is None else parse_size(node["max_size"]),
        "compile_bytecode": node["compile_bytecode"],
        **nonroot.read(node),
        "repository": node["repository"],
        "tags": None if node["tags"] is None else tuple(node["tags"]),
    }


def nonroot_inherit(nodes: dict[str, Node]) -> dict[str, Node]:
    """A node without a ``user`` of its own runs as its base's (parents come first)."""
    out: dict[str, Node] = {}
    for name, node in nodes.items():
        above = out[node.parent].user if node.parent is not None else None
        if node.user is None and above is not None:
            out[name] = replace(node, user=replace(above, inherited=True))
        else:
            out[name] = node
    return out


def _base_node(
    name: str, base: dict[str, Any], bases: dict[str, Any], confine: Confinement, shown: str
) -> Node:
    key = f"bases.{name}"
    parent, source = _parse_from(base["from"], bases, confine, shown, f"{key}.from")
    return Node(
        name=name,
        kind="base",
        parent=parent,
        os_source=source,
        requirements=_requirements(base, confine, shown, key),
        system=_tuple(base["system"]),
        run=_tuple(base["run"]),
        build_system=_tuple(base.get("build_system")),
        network=base["network"],
        context=_context_dir(name, base["context"], confine, shown),
        runtime=_runtime(base, confine, shown, key),
        version=base["version"],
        **_common(base),
    )


def _context_dir(name: str, context: str | None, confine: Confinement, shown: str) -> Path | None:
    if context is None:
        return None
    path = confine.resolve(
        context,
        base=confine.root,
        file=shown,
        key=f"bases.{name}.context",
        what="context directory",
    )
    if not path.is_dir():
        raise ManifestError(
            f"context directory {context!r} does not exist (looked for {path})",
            file=shown,
            key=f"bases.{name}.context",
            hint="point context at a directory relative to layerforge.toml",
        )
    return path


def _service_node(
    name: str,
    svc: dict[str, Any],
    bases: dict[str, Any],
    confine: Confinement,
    shown: str,
    services: dict[str, Any] | None = None,
) -> Node:
    key = f"services.{name}"
    if svc["base"] not in bases:
        base = svc["base"]
        is_service = base in (services or {})
        raise ManifestError(
            f"{base!r} is a service; a service can only sit on a base"
            if is_service
            else f"no base named {base!r}{did_you_mean(base, bases)}",
            file=shown,
            key=f"{key}.base",
            hint=f"bases defined: {', '.join(bases)}"
            + ("; to share code between services, put it in a base" if is_service else ""),
        )
    source: Path | None = None
    if svc["source"] is not None:
        source = confine.resolve(
            svc["source"],
            base=confine.root,
            file=shown,
            key=f"{key}.source",
            what="source directory",
        )
        if not source.is_dir():
            raise ManifestError(
                f"source directory {svc['source']!r} does not exist (looked for {source})",
                file=shown,
                key=f"{key}.source",
                hint="point source at the service's code, relative to layerforge.toml",
            )
    workdir: str = svc["workdir"]
    _check_workdir(workdir, shown, f"{key}.workdir")
    return Node(
        name=name,
        kind="service",
        parent=svc["base"],
        os_source=None,
        requirements=_requirements(svc, confine, shown, key),
        source=source,
        command=None if svc["command"] is None else tuple(svc["command"]),
        entrypoint=None if svc["entrypoint"] is None else tuple(svc["entrypoint"]),
        workdir=workdir,
        runtime=_runtime(svc, confine, shown, key),
        **_common(svc),
    )


def _check_repositories(nodes: dict[str, Node], shown: str) -> None:
    """Nodes pushed to one repository each need their own tags (``latest`` would clash)."""
    by_repo: dict[str, list[Node]] = {}
    for node in nodes.values():
        by_repo.setdefault(node.repository or node.name, []).append(node)
    for repo, sharing in by_repo.items():
        if len(sharing) < 2:
            continue
        untagged = [n for n in sharing if n.tags is None]
        seen: dict[str, str] = {}
        for node in sharing:
            for template in node.tags or ():
                if template in seen and "{node}" not in template and "{key}" not in template:
                    raise ManifestError(
                        f"{node.section} and {seen[template]} share repository {repo!r} and "
                        f"both push the tag {template!r}",
                        file=shown,
                        key=f"{node.section}.tags",
                        hint="give each node its own tags (e.g. with {node})",
                    )
                seen[template] = node.section
        if untagged:
            names = ", ".join(n.section for n in sharing)
            raise ManifestError(
                f"{names} share repository {repo!r}, but {untagged[0].section} has no tags "
                "(its default tag latest would clash)",
                file=shown,
                key=f"{untagged[0].section}.tags",
                hint='give every node of a shared repository its own tags, e.g. tags = ["ml"]',
            )


def _check_workdir(workdir: str, shown: str, key: str) -> None:
    if not workdir.startswith("/"):
        raise ManifestError(
            f"workdir must be an absolute path, not {workdir!r}",
            file=shown,
            key=key,
            hint="e.g. workdir = '/app'",
        )
    inner = workdir.strip("/")
    if inner and any(part in ("", ".", "..") for part in inner.split("/")):
        normal = os.path.normpath(workdir)
        raise ManifestError(
            f"workdir {workdir!r} has an empty, '.' or '..' component",
            file=shown,
            key=key,
            hint=f"write the path without them, e.g. workdir = {normal!r}"
            if ".." not in workdir.split("/")
            else "write a plain absolute path such as workdir = '/app'",
        )


def _check_pins(nodes: dict[str, Node], shown: str) -> None:
    """A child may not ask for a version that an ancestor pins with '=='."""
    for node in nodes.values():
        for dist, req in node.requirements.names().items():
            for above in graph.ancestors(nodes, node.name):
                pinned = above.requirements.names().get(dist)
                if pinned is not None:
                    _compare_pin(
                        node, req_text=str(req), above=above, pinned=str(pinned), shown=shown
                    )


def _compare_pin(node: Node, *, req_text: str, above: Node, pinned: str, shown: str) -> None:
    from packaging.requirements import Requirement  # noqa: PLC0415

    pin = Requirement(pinned)
    exact = [s.version for s in pin.specifier if s.operator in ("==", "===")]
    child = Requirement(req_text)
    if exact and not any(child.specifier.contains(v, prereleases=True) for v in exact):
        raise ManifestError(
            f"{req_text!r} conflicts with {above.section}, which pins {pinned!r}",
            file=shown,
            key=f"{node.section}.requirements",
            hint=f"a base pin is never changed by a child: change the pin in {above.section}, "
            f"or relax {canonicalize_name(child.name)} here",
        )
