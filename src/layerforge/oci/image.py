"""Image assembly: OCI config and manifest from a parent image plus new layers.

Config: architecture/os, Env, Cmd, Entrypoint, WorkingDir, Labels, User, ExposedPorts,
Healthcheck (Docker's shape; outside the OCI spec, which Docker reads and podman drops),
rootfs.diff_ids, and
history with exactly one non-empty entry per layer. Manifest annotations as the spec gives
them (the builder sets created, base.name, base.digest, version, revision and the content
key).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from layerforge.oci import media
from layerforge.oci.layer import Layer
from layerforge.oci.layout import Descriptor, Store, canonical_json


def created_at(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_env(base: list[str], updates: list[tuple[str, str]]) -> list[str]:
    """Overlay KEY=VALUE pairs on an Env list, keeping first-seen order."""
    env: dict[str, str] = {}
    for item in base:
        key, _, value = item.partition("=")
        env[key] = value
    for key, value in updates:
        env[key] = value
    return [f"{k}={v}" for k, v in env.items()]


@dataclass(frozen=True)
class ImageSpec:
    epoch: int
    env: list[str]
    cmd: list[str] | None = None
    entrypoint: list[str] | None = None
    workdir: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    user: str | None = None  # "uid:gid"; None keeps the parent's
    exposed_ports: tuple[str, ...] = ()  # "8000/tcp", added to the parent's
    healthcheck: dict[str, Any] | None = None  # Docker's shape; None keeps the parent's


@dataclass(frozen=True)
class Image:
    """An image in the store: its manifest's descriptor, its config, its layers."""

    manifest: Descriptor
    config: dict[str, Any]
    layers: tuple[Layer, ...]


def assemble(
    store: Store,
    spec: ImageSpec,
    parent_config: dict[str, Any] | None,
    parent_layers: tuple[Layer, ...],
    new_layers: list[Layer],
) -> Image:
    """Write the config and manifest of ``parent_layers`` plus ``new_layers`` to the store."""
    created = created_at(spec.epoch)
    layers = (*parent_layers, *new_layers)
    history = _history(parent_config, parent_layers, created)
    history += [
        {"created": created, "created_by": layer.created_by, "comment": "layerforge"}
        for layer in new_layers
    ]
    inner = dict((parent_config or {}).get("config") or {})
    inner["Env"] = spec.env
    for key, value in (
        ("Cmd", spec.cmd),
        ("Entrypoint", spec.entrypoint),
        ("WorkingDir", spec.workdir),
    ):
        if value is not None:
            inner[key] = value
    if spec.user is not None:
        inner["User"] = spec.user
    if spec.exposed_ports:
        ports = {**(inner.get("ExposedPorts") or {}), **{p: {} for p in spec.exposed_ports}}
        inner["ExposedPorts"] = dict(sorted(ports.items()))
    if spec.healthcheck is not None:
        inner["Healthcheck"] = spec.healthcheck
    labels = {**(inner.get("Labels") or {}), **(spec.labels or {})}
    if labels:
        inner["Labels"] = labels
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "config": inner,
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": history,
    }
    config_bytes = canonical_json(config)
    config_digest = store.put_bytes(config_bytes)
    manifest = {
        "schemaVersion": 2,
        "mediaType": media.OCI_MANIFEST,
        "config": {
            "mediaType": media.OCI_CONFIG,
            "digest": config_digest,
            "size": len(config_bytes),
        },
        "layers": [layer.descriptor.to_json() for layer in layers],
        "annotations": spec.annotations or {},
    }
    manifest_bytes = canonical_json(manifest)
    digest = store.put_bytes(manifest_bytes)
    desc = Descriptor(
        media.OCI_MANIFEST,
        digest,
        len(manifest_bytes),
        platform=(("architecture", "amd64"), ("os", "linux")),
    )
    return Image(desc, config, layers)


def _history(
    parent_config: dict[str, Any] | None, parent_layers: tuple[Layer, ...], created: str
) -> list[dict[str, Any]]:
    if parent_config is not None and parent_config.get("history"):
        history = [dict(h) for h in parent_config["history"]]
        if sum(1 for h in history if not h.get("empty_layer")) == len(parent_layers):
            return history
    return [
        {"created": created, "created_by": layer.created_by, "comment": "layerforge"}
        for layer in parent_layers
    ]
