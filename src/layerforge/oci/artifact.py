"""Artifacts that refer to an image: an OCI image manifest with an ``artifactType``, the
empty config, one blob, and a ``subject`` (the image's manifest).

This is how an SBOM is attached to an image without changing the image's digest
(distribution-spec 1.1). A registry with the referrers API lists them under
``/v2/REPO/referrers/DIGEST``; for one without it, the client keeps an index of them under the
tag ``sha256-<hex of the subject digest>`` (the "tag schema", :func:`fallback_tag`). The local
store tags the artifact manifest itself with that name, next to the image's tags.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from layerforge.oci.layout import Descriptor, Store, canonical_json
from layerforge.oci.media import OCI_INDEX, OCI_MANIFEST

EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_CONFIG = b"{}"
CYCLONEDX_JSON = "application/vnd.cyclonedx+json"
TITLE = "org.opencontainers.image.title"


def fallback_tag(digest: str) -> str:
    """The tag-schema name of the referrers of ``digest``: ``sha256-<hex>``."""
    algorithm, _, hex_ = digest.partition(":")
    return f"{algorithm}-{hex_}"


def is_fallback_tag(tag: str) -> bool:
    algorithm, _, hex_ = tag.partition("-")
    return algorithm == "sha256" and len(hex_) == 64


@dataclass(frozen=True)
class Artifact:
    """An artifact manifest in the store: its descriptor and what an index entry needs."""

    manifest: Descriptor
    artifact_type: str
    subject: str  # the digest it refers to
    annotations: tuple[tuple[str, str], ...] = ()

    def index_entry(self) -> dict[str, Any]:
        """The descriptor a referrers list (or the tag-schema index) holds for it."""
        entry = self.manifest.to_json()
        entry["artifactType"] = self.artifact_type
        if self.annotations:
            entry["annotations"] = dict(self.annotations)
        return entry


def write_artifact(
    store: Store,
    subject: Descriptor,
    artifact_type: str,
    data: bytes,
    title: str,
    annotations: dict[str, str] | None = None,
) -> Artifact:
    """Write ``data`` as an artifact referring to ``subject`` into the store (not tagged).

    The blob carries ``org.opencontainers.image.title`` (tools that pull it name the file
    after it). The same inputs always give the same manifest bytes."""
    config = Descriptor(EMPTY_MEDIA_TYPE, store.put_bytes(EMPTY_CONFIG), len(EMPTY_CONFIG))
    blob = Descriptor(artifact_type, store.put_bytes(data), len(data), ((TITLE, title),))
    notes = dict(sorted((annotations or {}).items()))
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": config.to_json(),
        "layers": [blob.to_json()],
        "subject": subject.without_annotations().to_json(),
    }
    if notes:
        manifest["annotations"] = notes
    raw = canonical_json(manifest)
    desc = Descriptor(OCI_MANIFEST, store.put_bytes(raw), len(raw))
    return Artifact(desc, artifact_type, subject.digest, tuple(notes.items()))


def read_artifact(store: Store, desc: Descriptor) -> Artifact:
    """The artifact a stored manifest describes (its type, subject and annotations)."""
    doc = store.read_json(desc.digest)
    notes = doc.get("annotations") or {}
    return Artifact(
        desc,
        str(doc.get("artifactType") or doc.get("config", {}).get("mediaType", "")),
        str(doc.get("subject", {}).get("digest", "")),
        tuple(sorted((str(k), str(v)) for k, v in notes.items())),
    )


def artifact_blob(store: Store, desc: Descriptor) -> bytes:
    """The one blob of an artifact manifest."""
    doc = store.read_json(desc.digest)
    return store.read_bytes(str(doc["layers"][0]["digest"]))


def merged_index(existing: dict[str, Any] | None, entry: dict[str, Any]) -> dict[str, Any] | None:
    """The tag-schema index with ``entry`` added; None when it is already listed."""
    manifests = list((existing or {}).get("manifests") or [])
    if any(m.get("digest") == entry["digest"] for m in manifests):
        return None
    return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [*manifests, entry]}
