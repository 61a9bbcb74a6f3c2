"""OS sources of kind ``rootfs``: a directory or a ``.tar[.gz|.zst]`` of a root filesystem;
the identity is the layer's diff_id. A tarball is unpacked once into the cache
(``tarballs/<sha256[:24]>``, :data:`layerforge.cachedir.TARBALLS`)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from layerforge import cachedir
from layerforge.fsutil import sha256_file
from layerforge.manifest import OSSource
from layerforge.oci import media
from layerforge.oci.unpack import unpack_layers
from layerforge.sources.base import (
    DEFAULT_ENV,
    BaseImage,
    SourceContext,
    find_libc,
    find_python,
    layer_from_dir,
    mkdir,
)


def materialize_rootfs(source: OSSource, ctx: SourceContext, where: str) -> BaseImage:
    assert source.path is not None
    path = source.path
    if path.is_dir():
        python = find_python(path, ctx.python, where)
        libc = find_libc(path)
        layer = layer_from_dir(ctx, path, source.describe())
    else:
        digest = sha256_file(path)
        target = cachedir.TARBALLS.path(ctx.cache_dir, digest[:24])
        if not target.is_dir():
            tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=mkdir(target.parent)))
            try:
                unpack_layers([(path, _tar_media(path))], tmp)
                tmp.rename(target)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        python = find_python(target, ctx.python, where)
        libc = find_libc(target)
        layer = layer_from_dir(ctx, target, source.describe())
    return BaseImage(layer.diff_id, source.describe(), (layer,), DEFAULT_ENV, python, libc)


def _tar_media(path: Path) -> str:
    if path.name.endswith((".tar.gz", ".tgz")):
        return media.OCI_LAYER_GZIP
    if path.name.endswith(".tar.zst"):
        return media.OCI_LAYER_ZSTD
    return media.OCI_LAYER_TAR
