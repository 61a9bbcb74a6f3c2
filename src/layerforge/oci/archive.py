"""``docker load`` / ``podman load`` archives: an OCI layout in a tar, plus ``manifest.json``.

The tar holds ``oci-layout``, ``index.json`` (one manifest, tagged), ``blobs/sha256/...``
(streamed from the store, never read whole into memory) and Docker's ``manifest.json``
(``[{"Config": .., "RepoTags": [..], "Layers": [..]}]``). Entries are deterministic (sorted,
uid/gid 0, mtime 0), and the archive is written to a temp file and renamed.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from layerforge.errors import StoreError
from layerforge.fsutil import temp_file
from layerforge.oci.layout import LAYOUT_VERSION, Descriptor, Store, canonical_json
from layerforge.oci.media import OCI_INDEX, REF_NAME


@dataclass(frozen=True)
class Archive:
    path: Path
    manifest: Descriptor
    repo_tag: str
    size: int


def _info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    tar.addfile(_info(name, len(data)), io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = _info(name, 0)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    tar.addfile(info)


def write_archive(store: Store, ref: str, out: Path, repo_tag: str) -> Archive:
    """Write image ``ref`` of ``store`` to ``out`` as a loadable archive named ``repo_tag``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_file(out.parent, ".tar")
    try:
        with os.fdopen(fd, "wb") as fh:
            desc = stream_archive(store, ref, fh, repo_tag)
        Path(tmp).replace(out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Archive(out, desc, repo_tag, out.stat().st_size)


def stream_archive(store: Store, ref: str, fh: IO[bytes], repo_tag: str) -> Descriptor:
    """Write image ``ref`` of ``store`` into ``fh`` (a file or a pipe, written in order,
    never sought) as a loadable archive named ``repo_tag``; returns its manifest."""
    desc = store.resolve(ref)
    if desc is None:
        raise StoreError(
            f"no image {ref!r} in {store.root}", hint="run `layerforge build` for that node first"
        )
    manifest = store.read_json(desc.digest)
    layers = [str(x["digest"]) for x in manifest["layers"]]
    config = str(manifest["config"]["digest"])
    blobs = sorted({desc.digest, config, *layers})
    missing = [d for d in blobs if not store.has_blob(d)]
    if missing:
        raise StoreError(
            f"{ref}: {len(missing)} blob(s) are not in {store.root} (e.g. {missing[0]})",
            hint="fetch them from the registry first (the node came from the remote cache)",
        )
    tagged = Descriptor(desc.media_type, desc.digest, desc.size, ((REF_NAME, repo_tag),))
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [tagged.to_json()]}
    docker = [
        {
            "Config": f"blobs/sha256/{config[7:]}",
            "RepoTags": [repo_tag],
            "Layers": [f"blobs/sha256/{d[7:]}" for d in layers],
        }
    ]
    with tarfile.open(fileobj=fh, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        _add_dir(tar, "blobs")
        _add_dir(tar, "blobs/sha256")
        for digest in blobs:
            path = store.blob_path(digest)
            with path.open("rb") as blob:
                tar.addfile(_info(f"blobs/sha256/{digest[7:]}", path.stat().st_size), blob)
        _add_bytes(tar, "index.json", canonical_json(index))
        _add_bytes(tar, "manifest.json", json.dumps(docker).encode())
        _add_bytes(tar, "oci-layout", canonical_json(LAYOUT_VERSION))
    return desc
