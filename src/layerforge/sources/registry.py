"""OS sources of kind ``registry``: a registry reference, pulled into the store; the identity
is the linux/amd64 manifest digest (the lock pins it)."""

from __future__ import annotations

from dataclasses import replace

from layerforge.errors import UsageError
from layerforge.manifest import OSSource
from layerforge.oci import media
from layerforge.oci.pull import pull
from layerforge.oci.reference import parse
from layerforge.sources.base import BaseImage, SourceContext, image_from_manifest


def materialize_reference(source: OSSource, ctx: SourceContext, where: str) -> BaseImage:
    """Pull ``source.spec`` (or the digest the lock pinned) and describe it as an OS base."""
    ref = parse(source.spec)
    if ctx.pinned:
        ref = ref.with_digest(ctx.pinned)
    if ctx.registry is None:
        raise UsageError(
            f"{where}: a registry OS source needs a registry configuration",
            hint="pass SourceContext(registry=RegistryConfig.from_env(os.environ))",
        )
    with ctx.registry.client(ref.registry) as client:
        pulled = pull(client, ref, ctx.store, ctx.reporter)
    image = image_from_manifest(
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
