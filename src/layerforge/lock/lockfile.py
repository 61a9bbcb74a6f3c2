"""``layerforge.lock``: the exact distributions of every node, as reviewable TOML.

Sorted, no timestamps, one table per node, so a diff shows exactly what moved::

    version = 1
    python = "3.11"
    platform = "x86_64-manylinux_2_28"

    [indexes]                          # only with [[project.index]]: name = URL, no credentials
    pytorch-cu128 = "https://..."

    [nodes.cpu]
    inputs = "sha256:..."              # what the node was resolved from
    source = { kind = "debootstrap", spec = "bookworm", identity = "...", libc = "glibc 2.36" }
    os = [               # version 2: debootstrap roots, one Debian package a line (wrapped here)
      { name = "libssl3", version = "3.0.17-1~deb12u2", arch = "amd64", suite = "bookworm",
        path = "pool/main/o/...", sha256 = "...", size = 2036016, priority = "optional" },
    ]
    archives = [                       # evidence of the archive state the rows were read from
      { suite = "bookworm", inrelease = "sha256:...", date = "Sat, 11 Jul 2026 10:16:37 UTC" },
    ]
    system_for = ["libgomp1"]          # version 2: a base's `system` step, as resolved
    system = [                         # what it installs beyond the parent (same fields as os)
      { name = "libgomp1", version = "12.2.0-14+deb12u1", ... },
    ]

    [[nodes.cpu.packages]]
    name = "numpy"
    version = "2.4.6"
    filename = "numpy-2.4.6-cp311-...whl"
    url = "..."
    sha256 = "..."
    size = 16918164
    index = "pytorch-cu128"            # only for a distribution [project.sources] pins
                                       # kind = "sdist" (only for a source distribution)

    [nodes.gpu.runtime.llm]             # a runtime group: locked, not baked
    inputs = "sha256:..."              # its requirements + every baked pin below it

    [[nodes.gpu.runtime.llm.packages]]
    name = "vllm"
    ...
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from layerforge.errors import LockError
from layerforge.fsutil import atomic_write

LOCK_NAME = "layerforge.lock"
LOCK_VERSION = 2  # written only when a node has Debian package rows; else 1 (as before)
READ_VERSIONS = (1, 2)


@dataclass(frozen=True, order=True)
class DebPackage:
    """One Debian package of a locked root: what the archive served (``path`` under the
    mirror, in ``suite``), its exact .deb (``sha256``, ``size``) and the archive's ``priority``
    (which dpkg's status records, and a control file may not agree with)."""

    name: str
    version: str
    arch: str
    suite: str
    path: str
    sha256: str
    size: int
    priority: str = "optional"

    @property
    def ref(self) -> str:
        return f"{self.name} {self.version} ({self.arch})"

    def fields(self) -> list[tuple[str, str | int]]:
        return [
            ("name", self.name), ("version", self.version), ("arch", self.arch),
            ("suite", self.suite), ("path", self.path), ("sha256", self.sha256),
            ("size", self.size), ("priority", self.priority),
        ]  # fmt: skip


@dataclass(frozen=True, order=True)
class ArchiveState:
    """Evidence of the archive state a root's rows were read from (not replayable): the
    sha256 of the suite's signed InRelease and its ``Date``."""

    suite: str
    inrelease: str
    date: str

    def fields(self) -> list[tuple[str, str | int]]:
        return [("suite", self.suite), ("inrelease", self.inrelease), ("date", self.date)]


@dataclass(frozen=True, order=True)
class Package:
    name: str  # canonical (PEP 503) name
    version: str
    filename: str
    url: str
    sha256: str
    size: int
    index: str | None = None  # the named index it was pinned to ([project.sources]), if any
    kind: str = "wheel"  # "sdist": built into a wheel by the build (builder/sdist.py)

    @property
    def pin(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass(frozen=True)
class LockedGroup:
    """A runtime group of a node: distributions installed on first use, not baked."""

    name: str
    inputs: str
    packages: tuple[Package, ...] = ()  # beyond everything baked in the node


@dataclass(frozen=True)
class SourcePin:
    """A root base's OS source as locked: what the manifest names, and the ``identity`` it
    resolved to (``sha256:...``; it feeds the root base's content key) once ``lock`` has
    materialized it."""

    kind: str
    spec: str
    packages: tuple[str, ...] = ()  # debootstrap: extra packages
    identity: str | None = None
    libc: str | None = None  # "glibc 2.36": the C library found in it (None: none, or unknown)
    os: tuple[DebPackage, ...] = ()  # debootstrap, lock version 2: the exact Debian packages
    archives: tuple[ArchiveState, ...] = ()  # where ``os`` was read from (evidence)

    def fields(self) -> list[tuple[str, str]]:
        """The lock file's inline table, in its order (packages comma-joined there)."""
        out = [("kind", self.kind), ("spec", self.spec)]
        if self.packages:
            out.append(("packages", ",".join(self.packages)))
        if self.identity is not None:
            out.append(("identity", self.identity))
        if self.libc is not None:
            out.append(("libc", self.libc))
        return out

    def to_json(self) -> dict[str, str]:
        return dict(self.fields())

    @classmethod
    def from_fields(cls, raw: dict[str, Any]) -> SourcePin:
        packages = str(raw.get("packages", ""))
        identity = raw.get("identity")
        libc = raw.get("libc")
        return cls(
            str(raw["kind"]),
            str(raw["spec"]),
            tuple(p for p in packages.split(",") if p),
            str(identity) if identity is not None else None,
            str(libc) if libc is not None else None,
        )


@dataclass(frozen=True)
class LockedNode:
    inputs: str
    packages: tuple[Package, ...] = ()  # this node's own distributions (not its ancestors')
    source: SourcePin | None = None  # root bases only
    runtime: tuple[LockedGroup, ...] = ()  # sorted by name (see layerforge.lock.runtime)
    # version 2: the Debian packages the node's `system` step installs (beyond its parent's),
    # and the apt specs they were resolved for (`system` + `build_system`, as the step names them)
    system: tuple[DebPackage, ...] = ()
    system_for: tuple[str, ...] = ()

    def by_name(self) -> dict[str, Package]:
        return {p.name: p for p in self.packages}

    @property
    def os_identity(self) -> str | None:
        """The locked identity of a root base's OS source (None: not a root, or not yet)."""
        return self.source.identity if self.source is not None else None


@dataclass(frozen=True)
class Lock:
    python: str
    platform: str
    nodes: dict[str, LockedNode] = field(default_factory=dict)
    indexes: tuple[tuple[str, str], ...] = ()  # [[project.index]] name -> URL, in order

    def packages_with_ancestors(self, chain: list[str]) -> dict[str, Package]:
        """All packages of the nodes in ``chain`` (root first)."""
        out: dict[str, Package] = {}
        for name in chain:
            out.update(self.nodes[name].by_name())
        return out


def _q(value: str) -> str:
    return json.dumps(value)


def _key(value: str) -> str:
    return value if re.fullmatch(r"[A-Za-z0-9_-]+", value) else json.dumps(value)


def dumps(lock: Lock) -> str:
    rows = any((n.source is not None and n.source.os) or n.system for n in lock.nodes.values())
    lines = [
        "# This file is generated by `layerforge lock`. Commit it; do not edit it by hand.",
        f"version = {LOCK_VERSION if rows else 1}",
        f"python = {_q(lock.python)}",
        f"platform = {_q(lock.platform)}",
    ]
    if lock.indexes:
        lines += ["", "[indexes]", *(f"{_key(n)} = {_q(url)}" for n, url in lock.indexes)]
    for name in sorted(lock.nodes):
        node = lock.nodes[name]
        lines += ["", f"[nodes.{_key(name)}]", f"inputs = {_q(node.inputs)}"]
        if node.source is not None:
            inner = ", ".join(f"{k} = {_q(v)}" for k, v in node.source.fields())
            lines.append(f"source = {{ {inner} }}")
            lines += _rows("os", sorted(node.source.os))
            lines += _rows("archives", sorted(node.source.archives))
        if node.system_for:
            lines.append(f"system_for = [{', '.join(_q(s) for s in node.system_for)}]")
            lines += _rows("system", sorted(node.system))
        lines += _packages(f"nodes.{_key(name)}.packages", node.packages)
        for group in sorted(node.runtime, key=lambda g: g.name):
            table = f"nodes.{_key(name)}.runtime.{_key(group.name)}"
            lines += ["", f"[{table}]", f"inputs = {_q(group.inputs)}"]
            lines += _packages(f"{table}.packages", group.packages)
    return "\n".join(lines) + "\n"


def _rows(key: str, rows: list[DebPackage] | list[ArchiveState]) -> list[str]:
    """A multi-line array of inline tables: a diff shows one line per moved row."""
    if not rows:
        return []
    out = [f"{key} = ["]
    for row in rows:
        inner = ", ".join(
            f"{k} = {v}" if isinstance(v, int) else f"{k} = {_q(v)}" for k, v in row.fields()
        )
        out.append(f"  {{ {inner} }},")
    return [*out, "]"]


def _packages(table: str, packages: tuple[Package, ...]) -> list[str]:
    lines: list[str] = []
    for pkg in sorted(packages):
        lines += [
            "",
            f"[[{table}]]",
            f"name = {_q(pkg.name)}",
            f"version = {_q(pkg.version)}",
            f"filename = {_q(pkg.filename)}",
            f"url = {_q(pkg.url)}",
            f"sha256 = {_q(pkg.sha256)}",
            f"size = {pkg.size}",
        ]
        if pkg.index is not None:
            lines.append(f"index = {_q(pkg.index)}")
        if pkg.kind != "wheel":  # written only for sdists: wheel entries stay as they were
            lines.append(f"kind = {_q(pkg.kind)}")
    return lines


def loads(text: str, *, path: str = LOCK_NAME) -> Lock:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LockError(f"{path}: invalid TOML: {exc}", hint="run `layerforge lock`") from None
    if data.get("version") not in READ_VERSIONS:
        raise LockError(
            f"{path}: unsupported lock version {data.get('version')!r}",
            hint="run `layerforge lock` to regenerate it with this layerforge",
        )
    try:
        nodes = {name: _node(raw) for name, raw in data.get("nodes", {}).items()}
        indexes = tuple((str(n), str(u)) for n, u in data.get("indexes", {}).items())
        return Lock(
            python=str(data["python"]),
            platform=str(data["platform"]),
            nodes=nodes,
            indexes=indexes,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise LockError(f"{path}: malformed lock ({exc})", hint="run `layerforge lock`") from None


def _node(raw: dict[str, Any]) -> LockedNode:
    source = SourcePin.from_fields(raw["source"]) if "source" in raw else None
    if source is not None and ("os" in raw or "archives" in raw):
        source = replace(
            source,
            os=tuple(_deb(r) for r in raw.get("os", [])),
            archives=tuple(
                ArchiveState(str(a["suite"]), str(a["inrelease"]), str(a["date"]))
                for a in raw.get("archives", [])
            ),
        )
    runtime = tuple(
        LockedGroup(str(name), str(group["inputs"]), _read_packages(group))
        for name, group in sorted(raw.get("runtime", {}).items())
    )
    return LockedNode(
        str(raw["inputs"]),
        _read_packages(raw),
        source,
        runtime,
        tuple(_deb(r) for r in raw.get("system", [])),
        tuple(str(s) for s in raw.get("system_for", [])),
    )


def _deb(raw: dict[str, Any]) -> DebPackage:
    return DebPackage(
        name=str(raw["name"]),
        version=str(raw["version"]),
        arch=str(raw["arch"]),
        suite=str(raw["suite"]),
        path=str(raw["path"]),
        sha256=str(raw["sha256"]),
        size=int(raw["size"]),
        priority=str(raw.get("priority", "optional")),
    )


def _read_packages(raw: dict[str, Any]) -> tuple[Package, ...]:
    return tuple(
        Package(
            name=str(p["name"]),
            version=str(p["version"]),
            filename=str(p["filename"]),
            url=str(p["url"]),
            sha256=str(p["sha256"]),
            size=int(p["size"]),
            index=str(p["index"]) if "index" in p else None,
            kind=str(p.get("kind", "wheel")),
        )
        for p in raw.get("packages", [])
    )


def read(path: Path) -> Lock:
    try:
        text = path.read_bytes().decode()
    except FileNotFoundError:
        raise LockError(
            f"{path} not found", hint="run `layerforge lock` to resolve the fleet"
        ) from None
    except UnicodeDecodeError as exc:
        raise LockError(
            f"{path}: not UTF-8 text (byte {exc.start} cannot be decoded)",
            hint="restore it from version control, or delete it and run `layerforge lock`",
        ) from None
    return loads(text, path=str(path))


def read_optional(path: Path) -> Lock | None:
    return read(path) if path.is_file() else None


def write(path: Path, lock: Lock) -> bool:
    """Write atomically; returns False (and writes nothing) if the content is unchanged."""
    text = dumps(lock)
    if path.is_file() and path.read_bytes() == text.encode():
        return False
    atomic_write(path, text.encode())
    return True
