"""Image assembly: OCI config and manifest from a parent image plus new layers.

Config: architecture/os, Env (PATH with /opt/venv/bin first, VIRTUAL_ENV), Cmd, Entrypoint,
WorkingDir, Labels, rootfs.diff_ids, and history with exactly one non-empty entry per layer.
Manifest annotations: created, base.name, base.digest, version, revision, and the content key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from layerforge.oci import media
from layerforge.oci.layout import Descriptor, Store, atomic_write, canonical_json
from layerforge.sources.base import Layer, PythonInfo

KEY_ANNOTATION = "dev.layerforge.key"
NODE_ANNOTATION = "dev.layerforge.node"


@dataclass(frozen=True)
class ImageRecord:
    """A built image as its children and the report see it."""

    node: str
    key: str
    manifest: Descriptor
    config: dict[str, Any]
    layers: tuple[Layer, ...]
    python: PythonInfo

    @property
    def env(self) -> list[str]:
        return list(self.config.get("config", {}).get("Env") or [])

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "key": self.key,
            "manifest": self.manifest.to_json(),
            "layers": [layer.to_json() for layer in self.layers],
            "python": {"executable": self.python.executable, "version": self.python.version},
        }


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


def venv_env(base: list[str]) -> list[tuple[str, str]]:
    path = dict(e.partition("=")[::2] for e in base).get("PATH", "/usr/local/bin:/usr/bin:/bin")
    parts = [p for p in path.split(":") if p and p != "/opt/venv/bin"]
    return [("PATH", ":".join(["/opt/venv/bin", *parts])), ("VIRTUAL_ENV", "/opt/venv")]


@dataclass(frozen=True)
class ImageSpec:
    node: str
    key: str
    epoch: int
    env: list[str]
    cmd: list[str] | None = None
    entrypoint: list[str] | None = None
    workdir: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


def assemble(
    store: Store,
    spec: ImageSpec,
    parent_config: dict[str, Any] | None,
    parent_layers: tuple[Layer, ...],
    new_layers: list[Layer],
    python: PythonInfo,
) -> ImageRecord:
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
    return ImageRecord(spec.node, spec.key, desc, config, layers, python)


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


def write_record(store_root: Path, record: ImageRecord, inputs: dict[str, Any]) -> None:
    """What the plan compares against next time (see plan.load_previous)."""
    from layerforge.plan import records_dir  # noqa: PLC0415

    hex12 = record.key.split(":", 1)[1][:12]
    doc = {**record.to_json(), "inputs": inputs}
    atomic_write(
        records_dir(store_root) / f"{hex12}.json",
        json.dumps(doc, indent=2, sort_keys=True).encode(),
    )


def read_record(store: Store, ref: str) -> ImageRecord | None:
    """The image a ref points at, rebuilt from its manifest and config in the store."""
    desc = store.resolve(ref)
    if desc is None or not store.has_blob(desc.digest):
        return None
    manifest = store.read_json(desc.digest)
    from layerforge.plan import records_dir  # noqa: PLC0415

    key = str(manifest.get("annotations", {}).get(KEY_ANNOTATION, ""))
    path = records_dir(store.root) / f"{key.split(':', 1)[-1][:12]}.json"
    if not key or not path.is_file():
        return None
    data = json.loads(path.read_text())
    config = store.read_json(str(manifest["config"]["digest"]))
    return ImageRecord(
        node=str(data["node"]),
        key=key,
        manifest=desc,
        config=config,
        layers=tuple(Layer.from_json(x) for x in data["layers"]),
        python=PythonInfo(str(data["python"]["executable"]), str(data["python"]["version"])),
    )
