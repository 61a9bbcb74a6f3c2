"""Publishing a project's fleet to its registry: pushing nodes with their tags, and the
registry as a remote cache of built nodes (implements the build's ``RemoteCache``).

Repositories are ``<project.registry>/<node>`` (or the node's ``repository``). Tags pushed per
node: ``lf-<key12>`` (immutable: the remote cache's), then either the node's ``tags``
templates or ``latest``, the version (the base's own, else the project's) if set, and the git
commit (12 hex) of the project's tree when it is clean (or the CI's, where there is no git
checkout). The image's SBOM, when the store holds one, follows as a
referrer (the referrers API, else the tag ``sha256-<hex>``: ``oci.push.push_referrer``).
Registry settings and clients: :mod:`layerforge.oci.config`.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from layerforge import proc
from layerforge.errors import LayerforgeError, RegistryError, StoreError, UsageError
from layerforge.events import Event, NullReporter, Reporter
from layerforge.fsutil import atomic_write
from layerforge.manifest import Project
from layerforge.manifest.tags import expand
from layerforge.oci.archive import stream_archive
from layerforge.oci.artifact import read_artifact
from layerforge.oci.config import RegistryConfig
from layerforge.oci.layer import Layer, annotated_size
from layerforge.oci.layout import Descriptor, Store
from layerforge.oci.pull import pull_blob, resolve_manifest
from layerforge.oci.push import (
    PushResult,
    PushSession,
    ReferrerResult,
    manifest_exists,
    push_image,
    push_referrer,
)
from layerforge.oci.reference import Reference, split_namespace
from layerforge.oci.registry import Client
from layerforge.plan import Plan, Step, short
from layerforge.records import ImageRecord, PythonInfo, read_record, write_record
from layerforge.sbom.attach import stored_sbom


@dataclass(frozen=True)
class Target:
    """Where a project's images go."""

    registry: str  # host[:port]
    namespace: str  # path prefix, may be empty
    repositories: tuple[tuple[str, str], ...] = ()  # node -> its own repository (manifest)

    def repository(self, node: str) -> str:
        name = dict(self.repositories).get(node, node)
        return f"{self.namespace}/{name}" if self.namespace else name

    @classmethod
    def of(cls, project: Project) -> Target:
        if not project.registry:
            raise UsageError(
                f"{project.manifest}: project.registry is not set; there is nowhere to push",
                hint="add registry = 'HOST[:PORT]/NAMESPACE' under [project]",
            )
        host, namespace = split_namespace(project.registry)
        own = tuple((n.name, n.repository) for n in project.nodes.values() if n.repository)
        return cls(host, namespace, own)


# -- push ---------------------------------------------------------------------------------


def git_commit(root: Path) -> str | None:
    """The commit of ``root``'s work tree if it is a clean git checkout, else None.

    Clean as ``git describe --dirty`` has it: no tracked file changed. Untracked files do not
    count: the store a build writes into the checkout (``.layerforge/``) is one.
    """
    status_args = ["status", "--porcelain", "--untracked-files=no"]
    try:
        status = proc.run(["git", "-C", str(root), *status_args], check=False)
        head = proc.run(["git", "-C", str(root), "rev-parse", "HEAD"], check=False)
    except LayerforgeError:
        return None
    if status.returncode or head.returncode or status.stdout.strip():
        return None
    return head.stdout.strip()[:12] or None


def push_commit(root: Path, ci_commit: str | None) -> str | None:
    """The commit tag of a push: a clean checkout's commit; none for a checkout with
    changes; ``ci_commit`` (12 hex) where ``root`` is no git checkout (a CI's source copy)."""
    commit = git_commit(root)
    if commit is not None or ci_commit is None:
        return commit
    try:
        inside = proc.run(["git", "-C", str(root), "rev-parse", "--git-dir"], check=False)
    except LayerforgeError:
        inside = None
    return None if inside is not None and inside.returncode == 0 else ci_commit[:12]


def tags_for(
    project: Project, name: str, key: str, commit: str | None, extra: tuple[str, ...] = ()
) -> list[str]:
    """``lf-<key12>``, then the node's templates expanded (or the default tags), then
    ``extra``; without duplicates."""
    node = project.nodes[name]
    version = node.version or project.version
    if node.tags is None:
        tags = [
            short(key),
            "latest",
            *([version] if version else []),
            *([commit] if commit else []),
        ]
    else:
        values = {"version": version, "commit": commit, "key": short(key)[3:], "node": name,
                  "project": project.name}  # fmt: skip
        expanded = [expand(template, values) for template in node.tags]
        tags = [short(key), *(t for t in expanded if t)]
    return list(dict.fromkeys([*tags, *extra]))


def push_nodes(
    project: Project,
    store: Store,
    names: list[str],
    config: RegistryConfig,
    reporter: Reporter | None = None,
    extra_tags: tuple[str, ...] = (),
    ci_commit: str | None = None,
) -> list[PushResult]:
    """Push each node's ``latest`` image (parents first, so children mount their layers);
    ``ci_commit``: the CI's commit (see :func:`push_commit`)."""
    target = Target.of(project)
    rep = reporter or NullReporter()
    session = PushSession(config.client(target.registry), target.registry, rep)
    session.chunk = config.upload_chunk
    ordered = [n for n in project.nodes if n in set(names)]
    commit = push_commit(project.root, ci_commit)  # once per push, not per node
    with store.shared(), session.client:  # gc waits until the blobs are pushed
        return [
            _push_one(project, store, session, target, name, commit, extra_tags) for name in ordered
        ]


def _push_one(
    project: Project,
    store: Store,
    session: PushSession,
    target: Target,
    name: str,
    commit: str | None,
    extra_tags: tuple[str, ...],
) -> PushResult:
    record = read_record(store, f"{name}:latest")
    if record is None:
        raise StoreError(
            f"{name} is not built in {store.root}",
            hint=f"run `layerforge build {name}` first (or `layerforge build --push`)",
        )
    for ancestor in reversed(project.ancestors(name)):
        parent = read_record(store, f"{ancestor.name}:latest")
        for layer in parent.layers if parent else ():
            session.holders.setdefault(layer.descriptor.digest, target.repository(ancestor.name))
    repo = target.repository(name)
    task = f"push:{name}"
    session.reporter.emit(Event("start", task, f"pushing {name} to {target.registry}/{repo}"))
    tags = tags_for(project, name, record.key, commit, extra_tags)
    result = push_image(session, store, record.manifest, repo, tags)
    result = replace(result, referrers=_push_sbom(session, store, record, repo))
    data: dict[str, object] = {"ok": True, "uploaded": result.uploaded_bytes}
    session.reporter.emit(Event("finish", task, data=data))
    return result


def _push_sbom(
    session: PushSession, store: Store, record: ImageRecord, repo: str
) -> tuple[ReferrerResult, ...]:
    """The image's SBOM from the store, as a referrer of the pushed manifest. A registry that
    refuses it gets a warning: the image itself is pushed."""
    found = stored_sbom(store, record.node, record.manifest.digest)
    if found is None:
        return ()
    try:
        return (push_referrer(session, store, read_artifact(store, found), repo),)
    except RegistryError as exc:
        message = f"the SBOM of {record.node} was not pushed: {exc.message}"
        session.reporter.emit(Event("warning", f"push:{record.node}", message))
        return ()


# -- remote cache -------------------------------------------------------------------------

UNREACHABLE_FOR = 300  # seconds an unreachable registry is not asked again by the remote cache


@dataclass
class RegistryCache:
    """The registry as a cache of built nodes (``NODE:lf-<key12>``)."""

    project: Project
    config: RegistryConfig
    reporter: Reporter = field(default_factory=NullReporter)
    # where an unreachable registry is remembered (None: nowhere, every use asks it again)
    status_dir: Path | None = None
    _client: Client | None = field(default=None, repr=False)
    _feeds_a_build: set[str] = field(default_factory=set, repr=False)

    @property
    def target(self) -> Target:
        return Target.of(self.project)

    def client(self) -> Client:
        if self._client is None:
            self._client = self.config.client(self.target.registry)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def present(self, plan: Plan) -> set[str]:
        """``NODE:lf-<key12>`` refs of the plan's to-build steps that the registry holds.

        The cache is an optimisation: if the registry cannot be asked, warn and build. A
        registry that never answered is asked once (no retries), and remembered for
        :data:`UNREACHABLE_FOR` seconds, during which it is not asked and nothing is said.
        """
        found: set[str] = set()
        target = self.target
        remembered = self._remembered()
        if remembered is not None:
            self.reporter.emit(Event("info", "remote-cache", f"remote cache skipped: {remembered}"))
        else:
            client = self.client()
            client.attempts_unanswered = 1
            try:
                for step in plan.to_build:
                    if manifest_exists(
                        client, target.registry, target.repository(step.node), step.tag
                    ):
                        found.add(f"{step.node}:{step.tag}")
            except RegistryError as exc:
                message = f"remote cache not used: {exc.message}"
                if not client.answered:
                    self._remember(exc.message)
                    message += (
                        f"; it is not asked again for {UNREACHABLE_FOR // 60} minutes "
                        "(`--offline` or LAYERFORGE_OFFLINE=1 never asks it)"
                    )
                self.reporter.emit(Event("warning", "remote-cache", message))
            else:
                self._forget()
            finally:
                self.close()
        # a node that a local build sits on needs its layers (verify unpacks them)
        self._feeds_a_build = {
            s.parent for s in plan.to_build if s.parent and f"{s.node}:{s.tag}" not in found
        }
        return found

    def _status_file(self) -> Path | None:
        if self.status_dir is None:
            return None
        name = hashlib.sha256(self.target.registry.encode()).hexdigest()[:16]
        return self.status_dir / f"{name}.json"

    def _remembered(self) -> str | None:
        """Why the registry was found unreachable, if that was less than
        :data:`UNREACHABLE_FOR` seconds ago."""
        path = self._status_file()
        try:
            doc = json.loads(path.read_text()) if path is not None else None
        except (OSError, ValueError):
            return None
        if not isinstance(doc, dict) or not isinstance(doc.get("unreachable_at"), int | float):
            return None
        if 0 <= time.time() - doc["unreachable_at"] < UNREACHABLE_FOR:
            return str(doc.get("error", "unreachable"))
        return None

    def _remember(self, error: str) -> None:
        path = self._status_file()
        if path is not None:
            doc = {"registry": self.target.registry, "unreachable_at": time.time(), "error": error}
            atomic_write(path, json.dumps(doc, sort_keys=True).encode())

    def _forget(self) -> None:
        path = self._status_file()
        if path is not None:
            path.unlink(missing_ok=True)

    def fetch(self, step: Step, store: Store, parent: ImageRecord | None) -> ImageRecord:
        """Manifest and config into the store (layers stay remote until needed)."""
        target = self.target
        repo = target.repository(step.node)
        ref = Reference(target.registry, repo, step.tag)
        digest, data, kind = resolve_manifest(self.client(), ref)
        manifest = json.loads(data)
        pull_blob(
            self.client(), ref, store, Descriptor.from_json(manifest["config"]), self.reporter
        )
        if step.node in self._feeds_a_build:
            for raw in manifest["layers"]:
                pull_blob(self.client(), ref, store, Descriptor.from_json(raw), self.reporter)
        store.put_bytes(data)
        config = store.read_json(str(manifest["config"]["digest"]))
        diff_ids = config["rootfs"]["diff_ids"]
        history = [h for h in config.get("history", []) if not h.get("empty_layer")]
        inherited = (
            {x.descriptor.digest: x.uncompressed_size for x in parent.layers} if parent else {}
        )
        layers = tuple(
            Layer(desc, str(diff_ids[i]),
                  str(history[i].get("created_by", "")) if i < len(history) else "",
                  annotated_size(desc) or inherited.get(desc.digest, 0))
            for i, desc in enumerate(Descriptor.from_json(raw) for raw in manifest["layers"])
        )  # fmt: skip
        python = (
            parent.python if parent else PythonInfo("/opt/venv/bin/python", self.project.python)
        )
        desc = Descriptor(
            kind, digest, len(data), platform=(("architecture", "amd64"), ("os", "linux"))
        )
        record = ImageRecord(step.node, step.key, desc, config, layers, python)
        store.tag_many({f"{step.node}:{step.tag}": desc, f"{step.node}:latest": desc})
        write_record(store.root, record, step.inputs.to_json())
        self.reporter.emit(Event("info", f"build:{step.node}", "reused from the registry"))
        self.close()
        return record


def mark_remote(plan: Plan, present: set[str]) -> Plan:
    """The plan with every step the registry holds marked ``remote`` ("in registry")."""
    steps = tuple(
        replace(s, status="remote", reasons=("in registry",))
        if s.status == "build" and f"{s.node}:{s.tag}" in present
        else s
        for s in plan.steps
    )
    return Plan(steps)


def fetch_missing(
    project: Project, store: Store, node: str, config: RegistryConfig, tag: str = "latest"
) -> int:
    """Pull the layers of ``node:tag`` that the store lacks (remote-cache hits); bytes."""
    desc = store.resolve(f"{node}:{tag}")
    if desc is None:
        raise StoreError(
            f"{node}:{tag} is not in {store.root}", hint=f"run `layerforge build {node}`"
        )
    manifest = store.read_json(desc.digest)
    missing = [
        Descriptor.from_json(x) for x in manifest["layers"] if not store.has_blob(x["digest"])
    ]
    if not missing:
        return 0
    target = Target.of(project)
    client = config.client(target.registry)
    ref = Reference(target.registry, target.repository(node), tag)
    with store.shared(), client:  # gc would remove the pulled blobs: no tag names them yet
        for layer in missing:
            pull_blob(client, ref, store, layer, NullReporter())
    return sum(x.size for x in missing)


# -- local engines ------------------------------------------------------------------------

ENGINES = ("podman", "docker")


@dataclass(frozen=True)
class Loaded:
    """An image handed to a local engine."""

    engine: str
    image: str  # the name it was loaded under
    digest: str  # its manifest digest in our store
    engine_id: str  # what the engine says it holds (podman: the manifest digest)


def archive_name(project: Project, node: str, tag: str) -> str:
    """The name of ``node:tag`` in an archive or an engine: ``<registry>/<node>:<tag>`` when
    ``project.registry`` is set, else ``<project>/<node>:<tag>``."""
    if not project.registry:
        return f"{project.name}/{node}:{tag}"
    host, namespace = split_namespace(project.registry)
    return f"{host}/{namespace + '/' if namespace else ''}{node}:{tag}"


def pick_engine(into: str | None) -> str:
    """``into`` (checked to be installed), else the first of podman and docker on PATH."""
    if into is not None:
        if into not in ENGINES:
            raise UsageError(f"--into {into!r}: choose one of {', '.join(ENGINES)}")
        proc.which(into)  # a ToolError with the install command when missing
        return into
    for engine in ENGINES:
        try:
            proc.which(engine)
        except LayerforgeError:
            continue
        return engine
    raise UsageError(
        "no container engine to load into: neither podman nor docker is on PATH",
        hint="install podman (apt-get install -y podman), or write a tar with "
        "`layerforge export archive NODE -o NODE.tar` and load it where an engine runs",
    )


def load_image(store: Store, ref: str, name: str, engine: str) -> Loaded:
    """Stream ``ref`` as an archive named ``name`` into ``ENGINE load`` (stdin, nothing
    staged on disk), then check what the engine holds under ``name``: podman keeps the
    manifest digest; docker's image ID is the config digest (its classic store) or the
    manifest digest (the containerd store). Anything else is an error."""
    desc = store.resolve(ref)
    if desc is None:
        raise StoreError(f"no image {ref!r} in {store.root}", hint="run `layerforge build` first")
    config = str(store.read_json(desc.digest)["config"]["digest"])
    proc.feed([engine, "load"], lambda fh: stream_archive(store, ref, fh, name))
    field_name = "{{.Digest}}" if engine == "podman" else "{{.Id}}"
    found = proc.run([engine, "image", "inspect", "--format", field_name, name])
    got = found.stdout.strip()
    expected = {desc.digest} if engine == "podman" else {desc.digest, config}
    if got not in expected:
        raise StoreError(
            f"{engine} holds {name} as {got or 'nothing'}, not as {desc.digest} (our store)",
            hint=f"{engine} changed the image while loading it; compare with "
            f"`{engine} image inspect {name}`",
        )
    return Loaded(engine, name, desc.digest, got)
