"""Relabel: a stored image with other version and revision labels (issue 13 item 5).

The version and revision are tags, not inputs: a content key names the same layers and config
whatever the project's version, except the ``org.opencontainers.image.version/revision``
labels and annotations (and ``base.digest``, label and annotation: the parent's manifest,
which moves when the parent is relabelled). A relabel writes a new config and manifest, the
bytes a fresh build of the new labels writes (see ``executor._image_spec``), and no layer.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import replace

from layerforge.manifest import Node
from layerforge.oci import media
from layerforge.oci.layout import Store, canonical_json
from layerforge.records import ImageRecord

LABELS = {
    "version": "org.opencontainers.image.version",
    "revision": "org.opencontainers.image.revision",
}
BASE_DIGEST = "org.opencontainers.image.base.digest"


def relabel(
    store: Store,
    record: ImageRecord,
    node: Node,
    labels: Mapping[str, str],
    parent: ImageRecord | None,
) -> ImageRecord:
    """``record`` with ``labels`` (version, revision; absent ones removed) and ``parent``'s
    manifest as its base; writes the config and manifest when they differ (else returns
    ``record`` unchanged)."""
    manifest = store.read_json(record.manifest.digest)
    config = copy.deepcopy(record.config)
    inner = config.setdefault("config", {})
    own = dict(node.labels)
    inherited = dict((parent.config.get("config") or {}).get("Labels") or {}) if parent else {}
    config_labels = dict(inner.get("Labels") or {})
    annotations = dict(manifest.get("annotations") or {})
    for name, full in LABELS.items():
        value = labels.get(name)
        _put(annotations, full, value)
        # as a build merges them: the parent's labels, ours, then the node's own labels
        _put(config_labels, full, own.get(full) or value or inherited.get(full))
    if parent is not None:  # a label too (a build labels the config with its annotations)
        annotations[BASE_DIGEST] = parent.manifest.digest
        _put(config_labels, BASE_DIGEST, own.get(BASE_DIGEST) or parent.manifest.digest)
    if config_labels:
        inner["Labels"] = config_labels
    else:
        inner.pop("Labels", None)
    if annotations == manifest.get("annotations") and config == record.config:
        return record
    config_bytes = canonical_json(config)
    manifest["config"] = {
        "mediaType": media.OCI_CONFIG,
        "digest": store.put_bytes(config_bytes),
        "size": len(config_bytes),
    }
    manifest["annotations"] = annotations
    manifest_bytes = canonical_json(manifest)
    digest = store.put_bytes(manifest_bytes)
    desc = replace(record.manifest, digest=digest, size=len(manifest_bytes))
    return replace(record, manifest=desc, config=config)


def _put(target: dict[str, str], key: str, value: str | None) -> None:
    if value:
        target[key] = value
    else:
        target.pop(key, None)
