"""Plan: content keys, what the store holds, and why anything must be (re)built.

A pure step: (project, lock, source trees, store tags, previous build records) -> Plan.
It reads no blob and touches no network.

The content key of a node is sha256 over a canonical encoding of everything that
determines its bytes: the parent's key (or the OS source identity), the node's locked
distributions, system packages and run steps, configuration, the source tree digest
(services), and the layer format version. Same key, same layers and config, except the
version and revision labels: those are tags, not inputs (``NodeInputs.labels``), and a store
that holds a node's key with other labels gets a ``relabel`` step (a new config and manifest).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from layerforge.errors import LockError
from layerforge.fsutil import digest_json
from layerforge.lock.inputs import key_doc as runtime_key_doc
from layerforge.lock.inputs import stale_nodes, system_lock_doc
from layerforge.lock.lockfile import Lock
from layerforge.manifest import Node, Project
from layerforge.records import records_dir
from layerforge.sourcetree import SourceTree, scan

LAYER_FORMAT = 2  # 2: layer descriptors carry dev.layerforge.uncompressed-size
# remote: in the registry (remote cache); rebase: only the OS below changed (plan --rebase);
# relabel: in the store with other version/revision labels
Status = Literal["cached", "build", "remote", "rebase", "relabel"]
# the inputs a rebase may see changed: the OS source of a root, the key of a rebased parent
# (locked OS packages add theirs here)
REBASE_INPUTS = frozenset({"os", "parent"})
REBASE_NOTE = "rebase: keeps the Python, runtime and app layers; renews the OS and system layers"


@dataclass(frozen=True)
class NodeInputs:
    """Everything that goes into a node's key, kept so a later plan can say what changed."""

    doc: dict[str, Any]
    source_files: dict[str, str] = field(default_factory=dict)
    # a root made from locked Debian packages: name -> version (not in the key; lets a later
    # plan say which packages moved)
    os_packages: dict[str, str] = field(default_factory=dict)
    system_packages: dict[str, str] = field(default_factory=dict)  # the same, of `system`
    labels: dict[str, str] = field(default_factory=dict)  # version, revision: not in the key

    @property
    def key(self) -> str:
        return digest_json(self.doc)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"doc": self.doc, "source_files": self.source_files}
        if self.os_packages:  # only then: other records keep their bytes
            out["os_packages"] = self.os_packages
        if self.system_packages:
            out["system_packages"] = self.system_packages
        if self.labels:
            out["labels"] = self.labels
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> NodeInputs:
        labels = {str(k): str(v) for k, v in dict(data.get("labels") or {}).items()}
        return cls(
            dict(data["doc"]),
            dict(data.get("source_files", {})),
            dict(data.get("os_packages", {})),
            dict(data.get("system_packages", {})),
            labels,
        )


def short(key: str) -> str:
    return "lf-" + key.split(":", 1)[1][:12]


@dataclass(frozen=True)
class Step:
    node: str
    kind: str  # base | service
    key: str
    status: Status
    reasons: tuple[str, ...]
    inputs: NodeInputs
    parent: str | None

    @property
    def tag(self) -> str:
        return short(self.key)


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]

    def by_node(self) -> dict[str, Step]:
        return {s.node: s for s in self.steps}

    @property
    def to_build(self) -> list[Step]:
        return [s for s in self.steps if s.status in ("build", "rebase")]


@dataclass(frozen=True)
class PlanOptions:
    revision: str | None = None
    locked: bool = True  # refuse a stale lock
    rebase: bool = False  # mark nodes whose only change is the OS below them ``rebase``


def node_inputs(
    project: Project, lock: Lock, node: Node, parent_key: str | None, tree: SourceTree | None
) -> NodeInputs:
    locked = lock.nodes[node.name]
    doc: dict[str, Any] = {
        "format": LAYER_FORMAT,
        "parent": parent_key,
        "python": project.python,
        "platform": lock.platform,
        "packages": [[p.name, p.version, p.sha256] for p in sorted(locked.packages)],
        "threshold": project.layer_threshold,
        "compression": project.compression,
        "epoch": project.source_date_epoch,
        "system": list(node.system),
        "run": list(node.run),
        "env": [list(e) for e in node.env],
        "labels": [list(e) for e in node.labels],
        "command": list(node.command) if node.command is not None else None,
        "entrypoint": list(node.entrypoint) if node.entrypoint is not None else None,
        "workdir": node.workdir,
        "kind": node.kind,
        "name": node.name,
    }
    if node.system or node.run:
        doc["network"] = node.network
    if node.build_system:  # only when declared: every other key stays where it was
        doc["build_system"] = list(node.build_system)
    if node.compile_bytecode:
        doc["bytecode"] = True
    doc.update(nonroot_key_doc(node))  # user, writable, expose, healthcheck: only when set
    doc.update(runtime_key_doc(locked))  # runtime group pins (not baked)
    needs = {g.name: list(g.needs) for g in node.runtime if g.needs}
    if needs:  # written into GROUP.json (only when declared)
        doc["runtime_needs"] = needs
    if node.os_source is not None:
        identity = locked.os_identity
        if identity is None:
            raise LockError(
                f"layerforge.lock has no OS source identity for {node.section}",
                hint="run `layerforge lock`",
            )
        doc["os"] = identity
    rows = locked.source.os if locked.source is not None else ()
    if rows:  # lock version 2: the root is made from the locked .debs (other bytes than v1's)
        doc["os_build"] = 2
    if locked.system:  # lock version 2: exactly these .debs in the system step
        doc["system_lock"] = system_lock_doc(locked.system)
    files: dict[str, str] = {}
    if tree is not None:
        doc["source"] = tree.digest
        files = tree.file_map()
    system = {r.name: r.version for r in sorted(locked.system)}
    os_packages = {r.name: r.version for r in sorted(rows)}
    return NodeInputs(doc, files, os_packages, system, image_labels(project, node))


def nonroot_key_doc(node: Node) -> dict[str, Any]:
    """The key entries of ``user``/``writable``/``expose``/``healthcheck``, each only when
    the node sets it (an inherited user is in the parent's key), so that no existing key
    moves."""
    doc: dict[str, Any] = {}
    if node.user is not None and not node.user.inherited:
        doc["user"] = node.user.key_doc()
    if node.writable:
        doc["writable"] = list(node.writable)
    if node.expose:
        doc["expose"] = list(node.expose)
    if node.healthcheck is not None:
        doc["healthcheck"] = node.healthcheck.config()
    return doc


def image_labels(project: Project, node: Node, revision: str | None = None) -> dict[str, str]:
    """The version (the node's own, else the project's) and revision an image is labelled
    with (tags, not inputs of its key); none when ``project.version_labels`` is false."""
    if not project.version_labels:
        return {}
    version = node.version or project.version
    labels = {"version": version} if version else {}
    if revision:
        labels["revision"] = revision
    return labels


def scan_sources(project: Project, exclude: tuple[Path, ...] = ()) -> dict[str, SourceTree]:
    """The source tree of each service and the context of each base; ``exclude``: the store
    and cache directories in use (never part of a tree, see :func:`scan`)."""
    trees = {
        n.name: scan(n.source, exclude) for n in project.nodes.values() if n.source is not None
    }
    trees.update({n.name: scan(n.context, exclude) for n in project.nodes.values() if n.context})
    return trees


def make_plan(
    project: Project,
    lock: Lock,
    trees: Mapping[str, SourceTree],
    store_tags: Mapping[str, str],
    previous: Mapping[str, NodeInputs],
    options: PlanOptions | None = None,
    selected: list[str] | None = None,
    *,
    labels: Mapping[str, Mapping[str, str]] | None = None,
) -> Plan:
    """``store_tags``: ref ('node:tag') -> manifest digest; ``previous``: node -> last inputs;
    ``labels``: content-key ref ('node:lf-…') -> the labels its stored image has (see
    :func:`load_labels`; a ref without an entry counts as labelled as wanted)."""
    options = options or PlanOptions()
    stale = stale_nodes(project, lock)
    if stale:
        raise LockError(
            f"layerforge.lock is out of date for: {', '.join(stale)}",
            hint="run `layerforge lock` (and commit layerforge.lock)",
        )
    steps: dict[str, Step] = {}
    for name in selected or list(project.nodes):
        node = project.nodes[name]
        parent = steps.get(node.parent) if node.parent else None
        inputs = node_inputs(project, lock, node, parent.key if parent else None, trees.get(name))
        if options.revision:
            inputs = replace(inputs, labels=image_labels(project, node, options.revision))
        key = inputs.key
        ref = f"{name}:{short(key)}"
        status: Status = "cached" if ref in store_tags else "build"
        reasons: tuple[str, ...] = ()
        if status == "build":
            reasons = tuple(explain(inputs, previous.get(name), parent, project))
            if options.rebase and rebases(inputs, previous.get(name), parent):
                status, reasons = "rebase", (*reasons, REBASE_NOTE)
        else:
            had = dict((labels or {}).get(ref, inputs.labels))
            reasons = tuple(_label_diff(had, inputs.labels))
            if parent is not None and parent.status == "relabel":
                reasons = reasons or (f"parent {parent.node} relabelled",)
            status = "relabel" if reasons else "cached"
        steps[name] = Step(name, node.kind, key, status, reasons, inputs, node.parent)
    return Plan(tuple(steps.values()))


_NONROOT = ("user", "writable", "expose", "healthcheck")


def rebases(new: NodeInputs, old: NodeInputs | None, parent: Step | None) -> bool:
    """Whether a node can be rebased: built before, and changed only in the OS below it (its
    own OS source, or the key of a parent that is itself rebased)."""
    if old is None:
        return False
    changed = {k for k in set(new.doc) | set(old.doc) if new.doc.get(k) != old.doc.get(k)}
    if not changed or not changed <= REBASE_INPUTS:
        return False
    return "parent" not in changed or (parent is not None and parent.status == "rebase")


def _label_diff(had: Mapping[str, str], wanted: Mapping[str, str]) -> list[str]:
    return [
        f"{name} {had.get(name, 'none')} -> {wanted.get(name, 'none')} (labels only)"
        for name in ("version", "revision")
        if had.get(name) != wanted.get(name)
    ]


_FLAGS = (
    ("bytecode", "compile_bytecode changed"),
    ("runtime", "runtime group pins changed (runtime layer only)"),
)


def explain(
    new: NodeInputs, old: NodeInputs | None, parent: Step | None, project: Project
) -> list[str]:
    if old is None:
        return ["new"]
    reasons: list[str] = []
    a, b = old.doc, new.doc
    if parent is not None and a.get("parent") != b.get("parent"):
        verb = "changes" if parent.status in ("build", "rebase") else "changed"
        reasons.append(f"parent {parent.node} {verb}")
    if a.get("os") != b.get("os") or a.get("os_build") != b.get("os_build"):
        reasons.append(_debs_diff("OS packages changed", old.os_packages, new.os_packages)
                       or "OS source changed")  # fmt: skip
    if a.get("packages") != b.get("packages"):
        reasons.append("requirements changed: " + _package_diff(a["packages"], b["packages"]))
    if a.get("source") != b.get("source"):
        reasons.append(_source_diff(old.source_files, new.source_files))
    config = [
        k
        for k in ("env", "labels", "command", "entrypoint", "workdir", *_NONROOT)
        if a.get(k) != b.get(k)
    ]
    if config:
        reasons.append("config changed: " + ", ".join(config))
    reasons += _system_reasons(old, new)
    other = [
        k
        for k in ("format", "python", "platform", "threshold", "compression", "epoch")
        if a.get(k) != b.get(k)
    ]
    reasons += [why for k, why in _FLAGS if a.get(k) != b.get(k)]
    if other:
        reasons.append("build settings changed: " + ", ".join(other))
    del project
    if not reasons and ("version" in a or "revision" in a):  # a record from before item 5
        return ["layerforge upgraded: version and revision left the key"]
    return reasons or ["not in the store"]


def _system_reasons(old: NodeInputs, new: NodeInputs) -> list[str]:
    a, b = old.doc, new.doc
    if any(a.get(k) != b.get(k) for k in ("system", "run", "network", "build_system")):
        return ["system packages or run steps changed"]
    if a.get("system_lock") != b.get("system_lock"):
        return [_debs_diff("system changed", old.system_packages, new.system_packages)
                or "system packages locked"]  # fmt: skip
    return []


def _debs_diff(what: str, old: dict[str, str], new: dict[str, str]) -> str:
    """``what: a 1 -> 2, +b 3`` of two records' locked Debian packages ("" when a record
    has none: one from before they were locked)."""
    if not (old and new):
        return ""
    return f"{what}: " + _package_diff([[n, v] for n, v in old.items()],
                                       [[n, v] for n, v in new.items()])  # fmt: skip


def _package_diff(old: list[list[str]], new: list[list[str]]) -> str:
    before = {p[0]: p[1] for p in old}
    after = {p[0]: p[1] for p in new}
    parts: list[str] = []
    for name in sorted(set(before) | set(after)):
        if name not in before:
            parts.append(f"+{name} {after[name]}")
        elif name not in after:
            parts.append(f"-{name} {before[name]}")
        elif before[name] != after[name]:
            parts.append(f"{name} {before[name]} -> {after[name]}")
    if not parts:
        return "same versions, different files"
    more = f" (+{len(parts) - 5} more)" if len(parts) > 5 else ""
    return ", ".join(parts[:5]) + more


def _source_diff(old: dict[str, str], new: dict[str, str]) -> str:
    changed = sorted(p for p in set(old) | set(new) if old.get(p) != new.get(p))
    noun = "file" if len(changed) == 1 else "files"
    shown = ", ".join(changed[:3]) + (", ..." if len(changed) > 3 else "")
    return f"source changed: {len(changed)} {noun} ({shown})"


# -- build records: what the last build of each node was made from ---------------------------


def load_previous(store_root: Path, store_tags: Mapping[str, str]) -> dict[str, NodeInputs]:
    """Inputs of each node's ``latest`` build, from the records written by ``build``."""
    out: dict[str, NodeInputs] = {}
    directory = records_dir(store_root)
    for ref in store_tags:
        node, _, tag = ref.partition(":")
        if tag != "latest":
            continue
        for candidate in _keys_of(store_tags, node, store_tags[ref]):
            path = directory / f"{candidate}.json"
            if path.is_file():
                out[node] = NodeInputs.from_json(json.loads(path.read_text())["inputs"])
                break
    return out


def load_labels(store_root: Path, store_tags: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """Content-key ref ('node:lf-…') -> the version/revision labels of the image its build
    record describes (records written before labels were kept: none)."""
    out: dict[str, dict[str, str]] = {}
    directory = records_dir(store_root)
    for ref in store_tags:
        tag = ref.partition(":")[2]
        path = directory / f"{tag[3:]}.json"
        if tag.startswith("lf-") and path.is_file():
            inputs = json.loads(path.read_text()).get("inputs") or {}
            out[ref] = {str(k): str(v) for k, v in dict(inputs.get("labels") or {}).items()}
    return out


def _keys_of(store_tags: Mapping[str, str], node: str, digest: str) -> list[str]:
    return [
        ref.split(":lf-", 1)[1]
        for ref, d in store_tags.items()
        if d == digest and ref.startswith(f"{node}:lf-")
    ]
