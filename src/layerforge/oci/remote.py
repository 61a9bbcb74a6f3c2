"""The project's registry: clients with credentials, pushing the fleet, the remote cache,
and registry references as OS sources.

Repositories are ``<project.registry>/<node>``. Tags pushed per node: ``lf-<key12>``
(immutable), ``latest``, the project version if set, and the git commit (12 hex) of the
project's tree when it is clean.
"""

from __future__ import annotations

import json
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from layerforge import proc
from layerforge.errors import LayerforgeError, RegistryError, StoreError, UsageError
from layerforge.events import Event, NullReporter, Reporter
from layerforge.oci import media
from layerforge.oci.auth import Credential, default_config_path, lookup, read_config, save_login
from layerforge.oci.layout import Descriptor, Store
from layerforge.oci.pull import pull, pull_blob, resolve_manifest
from layerforge.oci.push import PushResult, PushSession, manifest_exists, push_image
from layerforge.oci.reference import (
    DEFAULT_ENDPOINT,
    DEFAULT_REGISTRY,
    Reference,
    parse,
    split_namespace,
)
from layerforge.oci.registry import Client

if TYPE_CHECKING:
    from layerforge.manifest import OSSource, Project
    from layerforge.ossource import BaseImage, SourceContext
    from layerforge.plan import Plan, Step
    from layerforge.records import ImageRecord

INSECURE_ENV = "LAYERFORGE_INSECURE_REGISTRIES"
CERTS_ENV = "LAYERFORGE_CERTS_DIR"


def default_cert_dirs(env: Mapping[str, str]) -> tuple[Path, ...]:
    """Where ``<host:port>/*.crt`` CA files are looked for, first match wins (containers'
    order, after ``$LAYERFORGE_CERTS_DIR``)."""
    home = Path(env.get("HOME") or Path.home())
    config_home = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
    own = (Path(env[CERTS_ENV]),) if env.get(CERTS_ENV) else ()
    return (
        *own,
        config_home / "containers" / "certs.d",
        Path("/etc/containers/certs.d"),
        Path("/etc/docker/certs.d"),
    )


def tls_context(cert_dirs: tuple[Path, ...], host: str) -> ssl.SSLContext | None:
    """The system's CAs plus the ``*.crt`` files of the first ``DIR/<host>/`` that exists;
    None when no directory has an entry for ``host``."""
    entry = next((d / host for d in cert_dirs if (d / host).is_dir()), None)
    if entry is None:
        return None
    context = ssl.create_default_context()
    for ca in sorted(entry.glob("*.crt")):
        try:
            context.load_verify_locations(cafile=str(ca))
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(
                f"{ca}: not a PEM CA certificate ({exc})",
                hint=f"put the PEM certificate of the CA that signed {host}'s certificate there",
            ) from None
    return context


@dataclass(frozen=True)
class RegistryConfig:
    """Where credentials live, which hosts may use plain HTTP, where private CAs are."""

    docker_config: Path
    insecure: tuple[str, ...] = ()
    cert_dirs: tuple[Path, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RegistryConfig:
        insecure = tuple(h.strip() for h in env.get(INSECURE_ENV, "").split(",") if h.strip())
        return cls(default_config_path(env), insecure, default_cert_dirs(env))

    def client(self, registry: str, credential: Credential | None = None) -> Client:
        """A client for ``registry`` with its credential (from config.json unless given)."""
        endpoint = DEFAULT_ENDPOINT if registry == DEFAULT_REGISTRY else registry
        if credential is None:
            credential = lookup(read_config(self.docker_config), registry)
        insecure = registry in self.insecure
        tls = None if insecure else tls_context(self.cert_dirs, registry)
        return Client(endpoint, credential, insecure=insecure, tls=tls)


def default_config() -> RegistryConfig:
    """Read at call time (never at import): DOCKER_CONFIG, LAYERFORGE_INSECURE_REGISTRIES,
    LAYERFORGE_CERTS_DIR, HOME and XDG_CONFIG_HOME."""
    return RegistryConfig.from_env(os.environ)


@dataclass(frozen=True)
class Target:
    """Where a project's images go."""

    registry: str  # host[:port]
    namespace: str  # path prefix, may be empty

    def repository(self, node: str) -> str:
        return f"{self.namespace}/{node}" if self.namespace else node

    @classmethod
    def of(cls, project: Project) -> Target:
        if not project.registry:
            raise UsageError(
                f"{project.manifest}: project.registry is not set; there is nowhere to push",
                hint="add registry = 'HOST[:PORT]/NAMESPACE' under [project]",
            )
        host, namespace = split_namespace(project.registry)
        return cls(host, namespace)


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


def tags_for(project: Project, key: str, extra: tuple[str, ...] = ()) -> list[str]:
    from layerforge.plan import short  # noqa: PLC0415

    tags = [short(key), "latest"]
    if project.version:
        tags.append(project.version)
    return [*tags, *extra]


def push_nodes(
    project: Project,
    store: Store,
    names: list[str],
    config: RegistryConfig,
    reporter: Reporter | None = None,
    extra_tags: tuple[str, ...] = (),
) -> list[PushResult]:
    """Push each node's ``latest`` image (parents first, so children mount their layers)."""
    target = Target.of(project)
    rep = reporter or NullReporter()
    session = PushSession(config.client(target.registry), target.registry, rep)
    ordered = [n for n in project.nodes if n in set(names)]
    commit = git_commit(project.root)  # once per push, not per node
    tags = (*([commit] if commit else []), *extra_tags)
    with store.shared(), session.client:  # gc waits until the blobs are pushed
        return [_push_one(project, store, session, target, name, tags) for name in ordered]


def _push_one(
    project: Project,
    store: Store,
    session: PushSession,
    target: Target,
    name: str,
    extra_tags: tuple[str, ...],
) -> PushResult:
    from layerforge.records import read_record  # noqa: PLC0415

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
    tags = tags_for(project, record.key, extra_tags)
    result = push_image(session, store, record.manifest, repo, tags)
    data: dict[str, object] = {"ok": True, "uploaded": result.uploaded_bytes}
    session.reporter.emit(Event("finish", task, data=data))
    return result


# -- remote cache -------------------------------------------------------------------------


@dataclass
class RegistryCache:
    """The registry as a cache of built nodes (``NODE:lf-<key12>``)."""

    project: Project
    config: RegistryConfig
    reporter: Reporter = field(default_factory=NullReporter)
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

        The cache is an optimisation: if the registry cannot be asked, warn and build.
        """
        found: set[str] = set()
        target = self.target
        try:
            for step in plan.to_build:
                if manifest_exists(
                    self.client(), target.registry, target.repository(step.node), step.tag
                ):
                    found.add(f"{step.node}:{step.tag}")
        except RegistryError as exc:
            self.reporter.emit(
                Event("warning", "remote-cache", f"remote cache not used: {exc.message}")
            )
        finally:
            self.close()
        # a node that a local build sits on needs its layers (verify unpacks them)
        self._feeds_a_build = {
            s.parent for s in plan.to_build if s.parent and f"{s.node}:{s.tag}" not in found
        }
        return found

    def fetch(self, step: Step, store: Store, parent: ImageRecord | None) -> ImageRecord:
        """Manifest and config into the store (layers stay remote until needed)."""
        from layerforge.oci.layer import Layer, annotated_size  # noqa: PLC0415
        from layerforge.records import (  # noqa: PLC0415
            ImageRecord,
            PythonInfo,
            write_record,
        )

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
    from layerforge.plan import Plan as PlanType  # noqa: PLC0415

    steps = tuple(
        replace(s, status="remote", reasons=("in registry",))
        if s.status == "build" and f"{s.node}:{s.tag}" in present
        else s
        for s in plan.steps
    )
    return PlanType(steps)


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


# -- registry references as OS sources ----------------------------------------------------


def materialize_reference(source: OSSource, ctx: SourceContext, where: str) -> BaseImage:
    """Pull ``source.spec`` (or the digest the lock pinned) and describe it as an OS base."""
    from layerforge.ossource import _image_from_manifest  # noqa: PLC0415

    ref = parse(source.spec)
    pinned = getattr(ctx, "pinned", None)
    if pinned:
        ref = ref.with_digest(pinned)
    with default_config().client(ref.registry) as client:
        pulled = pull(client, ref, ctx.store, ctx.reporter)
    image = _image_from_manifest(
        pulled.descriptor.digest, pulled.config, source.describe(), ctx, where
    )
    # Docker-typed gzip layers are the same bytes as OCI gzip layers: our manifests use OCI
    layers = tuple(
        replace(x, descriptor=replace(x.descriptor, media_type=media.OCI_LAYER_GZIP))
        if x.descriptor.media_type == media.DOCKER_LAYER_GZIP
        else x
        for x in image.layers
    )
    return replace(image, layers=layers)


# -- login --------------------------------------------------------------------------------


def login(registry: str, credential: Credential, config: RegistryConfig) -> Path:
    """Check ``credential`` against ``registry`` (ping /v2/), then store it in config.json."""
    host = split_namespace(registry)[0]
    with config.client(host, credential) as client:
        resp = client.ping()
    if resp.status in (401, 403):
        raise RegistryError(
            f"registry {host} rejected the credentials of {credential.username!r} "
            f"(HTTP {resp.status})",
            hint=f"check the user name and password (or token), then `layerforge login {host}`",
        )
    if resp.status >= 300:
        raise RegistryError(f"registry {host}: /v2/ answered HTTP {resp.status}; is it a registry?")
    save_login(config.docker_config, host, credential)
    return config.docker_config
