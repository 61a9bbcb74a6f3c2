"""Files layerforge writes are readable by other users (regression: mkstemp made them 0600)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from layerforge.fsutil import atomic_write
from layerforge.oci import media
from layerforge.oci.archive import write_archive
from layerforge.oci.layout import Descriptor, Store, canonical_json


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


def test_blob_writes_sync_in_the_background_and_an_unhashed_writer_trusts_its_caller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib

    from layerforge.errors import StoreError
    from layerforge.oci import layout
    from layerforge.oci.tarball import Entry
    from layerforge.oci.write import write_layer_to_store

    monkeypatch.setattr(layout, "SYNC_EVERY", 1000)  # a background fdatasync every KB
    store = Store.open(tmp_path / "store")
    payload = bytes(range(256)) * 400
    with store.ingest() as writer:
        for i in range(0, len(payload), 777):
            writer.write(payload[i : i + 777])
        digest = writer.commit()
    assert store.blob_path(digest).read_bytes() == payload
    assert digest == "sha256:" + hashlib.sha256(payload).hexdigest()
    # the layer writer hashes what it writes; the blob is still named by its real digest
    entries = [Entry(f"f{i}", "file", 0o644, 50_000, data=payload[:50_000]) for i in range(9)]
    blob = write_layer_to_store(store, entries)
    data = store.blob_path(blob.digest).read_bytes()
    assert blob.digest == "sha256:" + hashlib.sha256(data).hexdigest() and blob.size == len(data)
    with pytest.raises(StoreError, match="needs its digest"), store.ingest(hashed=False) as w:
        w.write(b"x")
        w.commit()
    assert not [p for p in (store.root / "blobs/sha256").iterdir() if p.name.startswith(".tmp")]
