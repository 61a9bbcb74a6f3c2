"""Files layerforge writes are readable by other users (regression: mkstemp made them 0600)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from layerforge.oci import media
from layerforge.oci.archive import write_archive
from layerforge.oci.layout import Descriptor, Store, atomic_write, canonical_json


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_store_files_and_archives_get_the_umask_mode(tmp_path: Path, umask_022: None) -> None:
    store = Store.open(tmp_path / "store")
    with store.ingest() as writer:
        writer.write(b"layer bytes")
        layer = writer.commit()
    config = store.put_bytes(canonical_json({"rootfs": {"type": "layers", "diff_ids": []}}))
    manifest = canonical_json({
        "schemaVersion": 2, "mediaType": media.OCI_MANIFEST,
        "config": {"mediaType": media.OCI_CONFIG, "digest": config, "size": 1},
        "layers": [{"mediaType": media.OCI_LAYER_GZIP, "digest": layer, "size": 11}],
    })  # fmt: skip
    store.tag("api:latest", Descriptor(media.OCI_MANIFEST, store.put_bytes(manifest), 1))
    atomic_write(tmp_path / "layerforge.lock", b"# lock\n")
    write_archive(store, "api:latest", tmp_path / "api.tar", "demo/api:latest")
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) >= 7
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
