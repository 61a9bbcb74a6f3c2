"""An image's SBOM in the store: made from its layers and the lock, written as an OCI
artifact whose ``subject`` is the image manifest, and tagged ``NODE:sha256-<hex>`` (the
name the registry fallback uses; see :mod:`layerforge.oci.artifact`)."""

from __future__ import annotations

from layerforge.lock.lockfile import Lock
from layerforge.oci.artifact import Artifact, artifact_blob, fallback_tag, write_artifact
from layerforge.oci.image import created_at
from layerforge.oci.layout import Descriptor, Store
from layerforge.records import NODE_ANNOTATION, ImageRecord
from layerforge.sbom.contents import image_contents
from layerforge.sbom.document import FILE_NAME, MEDIA_TYPE, ImageFacts, image_sbom


def sbom_ref(node: str, manifest_digest: str) -> str:
    """The store tag of the SBOM of ``node``'s image ``manifest_digest``."""
    return f"{node}:{fallback_tag(manifest_digest)}"


def wheel_hashes(lock: Lock) -> dict[tuple[str, str], str]:
    """(canonical name, version) -> sha256 of every file the lock pins (nodes and groups)."""
    out: dict[tuple[str, str], str] = {}
    for locked in lock.nodes.values():
        packages = [*locked.packages, *(p for g in locked.runtime for p in g.packages)]
        for package in packages:
            out.setdefault((package.name, package.version), package.sha256)
    return out


def make_sbom(store: Store, record: ImageRecord, lock: Lock, epoch: int) -> bytes:
    """The CycloneDX document of a built image (its layers must be in the store)."""
    facts = ImageFacts(
        record.node,
        f"lf-{record.key.split(':', 1)[1][:12]}",
        record.manifest.digest,
        record.python.executable,
        record.python.version,
        epoch,
    )
    return image_sbom(facts, image_contents(store, record.layers), wheel_hashes(lock))


def write_sbom(store: Store, record: ImageRecord, lock: Lock, epoch: int) -> Artifact:
    """Make the SBOM and write it as an artifact referring to the image (not tagged yet:
    tag it ``sbom_ref(...)`` with the image's own tags)."""
    data = make_sbom(store, record, lock, epoch)
    notes = {"org.opencontainers.image.created": created_at(epoch), NODE_ANNOTATION: record.node}
    return write_artifact(store, record.manifest, MEDIA_TYPE, data, FILE_NAME, notes)


def stored_sbom(store: Store, node: str, manifest_digest: str) -> Descriptor | None:
    """The SBOM artifact of an image in the store, if one was written."""
    return store.resolve(sbom_ref(node, manifest_digest))


def sbom_bytes(store: Store, desc: Descriptor) -> bytes:
    return artifact_blob(store, desc)
