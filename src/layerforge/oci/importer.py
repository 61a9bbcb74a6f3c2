"""Copy an image from another OCI image layout into the store (``oci:LAYOUT[:TAG]`` sources)."""

from __future__ import annotations

import json
import os
from typing import Any

from layerforge.errors import SourceError, StoreError
from layerforge.oci import media
from layerforge.oci.layout import DOCUMENT_LIMIT, Descriptor, Store, open_regular, read_bounded

CHUNK = 1 << 20


def _pick(src: Store, tag: str | None, where: str) -> Descriptor:
    tags = src.tags()
    if tag is not None:
        desc = tags.get(tag)
        if desc is None:
            raise SourceError(
                f"{where}: no image tagged {tag!r} in {src.root}",
                hint=f"tags there: {', '.join(sorted(tags)) or '(none)'}",
            )
        return desc
    index = json.loads(read_bounded(src.root / "index.json"))
    entries = index.get("manifests", [])
    if len(entries) != 1:
        raise SourceError(
            f"{where}: {src.root} holds {len(entries)} images; name one as oci:DIR:TAG",
            hint=f"tags there: {', '.join(sorted(tags)) or '(none)'}",
        )
    return Descriptor.from_json(entries[0])


def _platform_manifest(src: Store, desc: Descriptor, where: str) -> Descriptor:
    if desc.media_type not in (media.OCI_INDEX, media.DOCKER_LIST):
        return desc
    index = src.read_json(desc.digest)
    for entry in index.get("manifests", []):
        platform = entry.get("platform", {})
        if platform.get("os") == "linux" and platform.get("architecture") == "amd64":
            return Descriptor.from_json(entry)
    raise SourceError(f"{where}: the index {desc.digest} has no linux/amd64 image")


def _copy_blob(src: Store, dst: Store, digest: str, size: int, *, link: bool = False) -> None:
    """Copy one blob: a regular file of at most ``size`` bytes (its descriptor's), whose
    digest the writer checks; a layout that says otherwise is an error, not a full disk."""
    if dst.has_blob(digest):
        return
    if link and _link_blob(src, dst, digest):
        return
    try:
        with open_regular(src.blob_path(digest)) as fh, dst.ingest() as writer:
            left = size + 1  # one byte more shows a blob larger than its descriptor
            while left > 0 and (chunk := fh.read(min(left, CHUNK))):
                writer.write(chunk)
                left -= len(chunk)
            if left <= 0:
                raise StoreError(
                    f"blob {digest} in {src.root} is larger than the {size} bytes its "
                    "descriptor says",
                    hint="the layout is corrupt or was changed after it was written",
                )
            writer.commit(digest)
    except FileNotFoundError:
        raise StoreError(f"blob {digest} is missing from {src.root}") from None


def _link_blob(src: Store, dst: Store, digest: str) -> bool:
    """Hard-link a verified blob into ``dst`` (same file system); False if that cannot be."""
    target = dst.blob_path(digest)
    tmp = target.with_name(f".tmp-link-{os.getpid()}-{target.name}")
    try:
        os.link(src.blob_path(digest), tmp)
        os.replace(tmp, target)
    except OSError:
        tmp.unlink(missing_ok=True)
        return False
    return True


def import_image(src: Store, tag: str | None, dst: Store, where: str) -> tuple[str, dict[str, Any]]:
    """Copy config, layers and manifest (in that order); returns (manifest digest, config)."""
    desc = _platform_manifest(src, _pick(src, tag, where), where)
    copy_image(src, desc.digest, dst)
    manifest = dst.read_json(desc.digest)
    return desc.digest, dst.read_json(str(manifest["config"]["digest"]))


def copy_image(src: Store, manifest_digest: str, dst: Store, *, link: bool = False) -> None:
    """Copy the layers, config and manifest of one image (in that order: the manifest last).

    ``link``: hard-link instead where both stores share a file system; only for a ``src``
    that layerforge owns (a staging store), never a user's layout, whose files may change.
    """
    manifest = src.read_json(manifest_digest)  # a bounded read of a regular file, verified
    for layer in manifest.get("layers", []):
        _copy_blob(src, dst, str(layer["digest"]), int(layer["size"]), link=link)
    config = manifest["config"]
    _copy_blob(src, dst, str(config["digest"]), int(config["size"]), link=link)
    _copy_blob(src, dst, manifest_digest, DOCUMENT_LIMIT, link=link)
