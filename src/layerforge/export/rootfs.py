"""The root filesystem tarball a Dockerfile ``ADD``s when its OS source cannot be pulled.

A debootstrap or ``rootfs:`` source has no registry image; the tarball is the OS layer
layerforge itself built from it (same bytes, from the local store), so a Docker build starts
from exactly the root filesystem the lock was made from. It is large and derived: the
export directory's ``.gitignore`` keeps it out of git.
"""

from __future__ import annotations

import filecmp
import shutil
from dataclasses import replace
from pathlib import Path

from layerforge import cachedir
from layerforge.errors import LockError
from layerforge.events import Event, Reporter
from layerforge.export.dockerfile import ROOTFS, needs_rootfs
from layerforge.lock.lockfile import Lock
from layerforge.manifest import Project
from layerforge.oci import media
from layerforge.oci.compress import transcode_to_gzip
from layerforge.oci.layout import Store
from layerforge.sources.base import SourceContext
from layerforge.sources.materialize import materialize


def write_rootfs(
    project: Project,
    lock: Lock,
    store: Store,
    cache_dir: Path,
    directory: Path,
    reporter: Reporter,
) -> tuple[list[Path], list[Path]]:
    """Write ``DIR/NODE/rootfs.tar.gz`` for each root base that needs one; returns the
    paths written and those left alone (already holding the same bytes)."""
    if not any(needs_rootfs(n) for n in project.nodes.values()):
        return [], []
    with cachedir.using(cache_dir, store.root, project.manifest):
        return _write_rootfs(project, lock, store, cache_dir, directory, reporter)


def _write_rootfs(
    project: Project,
    lock: Lock,
    store: Store,
    cache_dir: Path,
    directory: Path,
    reporter: Reporter,
) -> tuple[list[Path], list[Path]]:
    written: list[Path] = []
    unchanged: list[Path] = []
    for node in project.nodes.values():
        if not needs_rootfs(node):
            continue
        assert node.os_source is not None
        ctx = SourceContext(
            store, cache_dir, reporter, project.python, project.compression,
            project.source_date_epoch,
        )  # fmt: skip
        pin = lock.nodes[node.name].source
        ctx = replace(ctx, os_rows=pin.os if pin is not None else ())
        image = materialize(node.os_source, ctx, node.section, refresh=False)
        locked = lock.nodes[node.name].os_identity
        if locked is not None and locked != image.identity:
            raise LockError(
                f"{node.section}: the OS source {node.os_source.describe()} is not the one "
                "layerforge.lock was made from",
                hint="run `layerforge lock --upgrade` (or restore the old OS source)",
            )
        (layer,) = image.layers
        target = directory / node.name / ROOTFS
        if _copy_gzip(store, layer.descriptor.digest, layer.descriptor.media_type, target):
            reporter.emit(Event("info", f"export:{node.name}", f"wrote {target}"))
            written.append(target)
        else:
            unchanged.append(target)
    return written, unchanged


def _copy_gzip(store: Store, digest: str, media_type: str, target: Path) -> bool:
    """Put the layer at ``target`` as a gzip (or plain) tar; False if it already was."""
    source = store.blob_path(digest)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    if media_type == media.OCI_LAYER_ZSTD:
        transcode_to_gzip(source, media_type, tmp)
    else:
        shutil.copyfile(source, tmp)
    if target.is_file() and filecmp.cmp(tmp, target, shallow=False):
        tmp.unlink()
        return False
    tmp.replace(target)
    return True
