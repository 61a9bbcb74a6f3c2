"""OS sources of kind ``oci``: an image in a local OCI layout; the identity is its manifest
digest."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from layerforge import cachedir
from layerforge.manifest import OSSource
from layerforge.oci.importer import copy_image, import_image
from layerforge.oci.layout import Store
from layerforge.sources.base import BaseImage, SourceContext, image_from_manifest, mkdir


def materialize_oci(source: OSSource, ctx: SourceContext, where: str) -> BaseImage:
    """Import into a staging store first: an image refused (no such tag, the wrong Python)
    leaves no blob in the project's store."""
    assert source.path is not None
    src = Store.open(source.path, create=False)
    staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=mkdir(cachedir.STAGE.path(ctx.cache_dir))))
    try:
        staged = Store.open(staging)
        manifest_digest, config = import_image(src, source.tag, staged, where)
        image = image_from_manifest(
            manifest_digest, config, source.describe(), replace(ctx, store=staged), where
        )
        copy_image(staged, manifest_digest, ctx.store, link=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return image
