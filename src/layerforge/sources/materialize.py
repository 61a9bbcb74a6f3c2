"""Materialize an OS source as layers in the store, reusing the last record of it.

Kinds (a dict of implementations, not a hierarchy), one module each:

- ``debootstrap`` (:mod:`layerforge.sources.debootstrap`): run ``debootstrap`` once per
  (suite, variant, packages) and cache the root filesystem under the cache directory; its
  identity is the exact list of Debian packages.
- ``rootfs`` (:mod:`layerforge.sources.rootfs`): a directory or a ``.tar[.gz]`` of a root
  filesystem; identity = the layer diff_id.
- ``oci`` (:mod:`layerforge.sources.ocilayout`): an image in a local OCI layout; identity = its
  manifest digest.
- ``registry`` (:mod:`layerforge.sources.registry`): a registry reference; identity = the
  linux/amd64 manifest digest (the lock pins it).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

from layerforge.fsutil import atomic_write
from layerforge.lock.lockfile import DebPackage
from layerforge.manifest import OSSource
from layerforge.oci.layout import Store
from layerforge.sources.base import BaseImage, SourceContext
from layerforge.sources.debian import rows_key
from layerforge.sources.debootstrap import materialize_debootstrap
from layerforge.sources.ocilayout import materialize_oci
from layerforge.sources.registry import materialize_reference
from layerforge.sources.rootfs import materialize_rootfs

MATERIALIZERS: dict[str, Callable[[OSSource, SourceContext, str], BaseImage]] = {
    "debootstrap": materialize_debootstrap,
    "rootfs": materialize_rootfs,
    "oci": materialize_oci,
    "registry": materialize_reference,
}


def record_path(store: Store, source: OSSource, rows: tuple[DebPackage, ...] = ()) -> Path:
    return record_in(store.root, source, rows)


def record_in(store_root: Path, source: OSSource, rows: tuple[DebPackage, ...] = ()) -> Path:
    # default json separators: the name of a record that exists in users' stores
    spec = json.dumps([source.kind, source.spec, list(source.packages), source.variant])
    if rows:  # a root made from locked Debian packages: a record of its own
        spec += " " + rows_key(rows)
    key = hashlib.sha256(spec.encode()).hexdigest()[:24]
    return store_root / "layerforge" / "sources" / f"{key}.json"


def recorded(
    store_root: Path, source: OSSource, rows: tuple[DebPackage, ...] = ()
) -> BaseImage | None:
    """The last record of ``source`` in the store at ``store_root`` (None: none, or one older
    than libc detection), read without materializing anything."""
    path = record_in(store_root, source, rows)
    if not path.is_file():
        return None
    raw = json.loads(path.read_text())
    return BaseImage.from_json(raw) if "libc" in raw else None


def materialize(source: OSSource, ctx: SourceContext, where: str, *, refresh: bool) -> BaseImage:
    """The OS source as layers in the store, reusing the last record unless ``refresh``."""
    path = record_path(ctx.store, source, ctx.os_rows)
    if not refresh and path.is_file():
        raw = json.loads(path.read_text())
        image = BaseImage.from_json(raw)
        pinned = source.kind != "registry" or ctx.pinned in (None, image.identity)
        same_python = image.python.version == ctx.python  # else look for it again (and refuse)
        looked = "libc" in raw  # a record older than libc detection: look again, once
        if (
            pinned
            and same_python
            and looked
            and all(ctx.store.has_blob(x.descriptor.digest) for x in image.layers)
        ):
            return image
    image = MATERIALIZERS[source.kind](source, ctx, where)
    atomic_write(path, json.dumps(image.to_json(), indent=2, sort_keys=True).encode())
    return image
