"""A hostile or careless ``oci:`` layout cannot hang or exhaust an import.

Its blobs and its ``index.json`` are files someone else wrote: a fifo would block the read
forever, a symlink to ``/dev/zero`` would never end, a blob larger than its descriptor says
would fill the disk. Each must be a clear error at once.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from layerforge.errors import LayerforgeError
from layerforge.fsutil import sha256_digest
from layerforge.oci import media
from layerforge.oci.importer import import_image
from layerforge.oci.layout import DOCUMENT_LIMIT, Descriptor, Store, canonical_json


def _layout(root: Path) -> tuple[Store, str, str]:
    """A one-layer image tagged ``base``; returns (store, layer digest, manifest digest)."""
    store = Store.open(root)
    layer = store.put_bytes(b"layer bytes")
    config = store.put_bytes(canonical_json({"architecture": "amd64", "os": "linux"}))
    manifest = {
        "schemaVersion": 2,
        "mediaType": media.OCI_MANIFEST,
        "config": {"mediaType": media.OCI_CONFIG, "digest": config, "size": 37},
        "layers": [{"mediaType": media.OCI_LAYER_GZIP, "digest": layer, "size": 11}],
    }
    raw = canonical_json(manifest)
    digest = store.put_bytes(raw)
    store.tag("base", Descriptor(media.OCI_MANIFEST, digest, len(raw)))
    return store, layer, digest


def _import_within(src: Store, dst: Store, seconds: float = 20) -> BaseException | None:
    """Run the import in a thread; the test fails (instead of hanging) if it never returns."""
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            import_image(src, "base", dst, "bases.cpu.from")
        except BaseException as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, f"the import did not return within {seconds} s (it hangs)"
    return outcome[0]


def _replace(path: Path, how: str) -> None:
    path.unlink()
    if how == "fifo":
        os.mkfifo(path)
    elif how == "zero":
        path.symlink_to("/dev/zero")
    else:
        raise AssertionError(how)


@pytest.mark.parametrize("how", ["fifo", "zero"])
@pytest.mark.parametrize("which", ["layer", "manifest", "index"])
def test_a_blob_that_is_not_a_regular_file_is_an_error_not_a_hang(
    tmp_path: Path, how: str, which: str
) -> None:
    src, layer, manifest = _layout(tmp_path / "src")
    path = {
        "layer": src.blob_path(layer),
        "manifest": src.blob_path(manifest),
        "index": src.root / "index.json",
    }[which]
    _replace(path, how)
    dst = Store.open(tmp_path / "dst")
    error = _import_within(src, dst)
    assert isinstance(error, LayerforgeError), repr(error)
    assert "regular file" in error.message
    assert not dst.has_blob(layer)


def test_a_blob_larger_than_its_descriptor_stops_at_the_size(tmp_path: Path) -> None:
    src, _, manifest_digest = _layout(tmp_path / "src")
    # the layer the manifest names is 11 bytes; its file holds 64 MiB more
    manifest = src.read_json(manifest_digest)
    big = src.blob_path(manifest["layers"][0]["digest"])
    with big.open("ab") as fh:
        fh.truncate(64 << 20)
    dst = Store.open(tmp_path / "dst")
    error = _import_within(src, dst)
    assert isinstance(error, LayerforgeError), repr(error)
    assert "larger than" in error.message
    assert not any(p.stat().st_size > 1 << 20 for p in (dst.root / "blobs/sha256").iterdir())


def test_an_honest_layout_still_imports(tmp_path: Path) -> None:
    src, layer, manifest = _layout(tmp_path / "src")
    dst = Store.open(tmp_path / "dst")
    assert _import_within(src, dst) is None
    assert dst.read_bytes(layer) == b"layer bytes"
    assert sha256_digest(dst.read_bytes(manifest)) == manifest
    assert json.loads(dst.read_bytes(manifest))["layers"][0]["digest"] == layer


def test_only_documents_are_bounded(tmp_path: Path) -> None:
    """A layer may be GBs: read_bytes reads it whole; read_json (manifests, configs, indexes)
    stops at DOCUMENT_LIMIT instead of reading a huge file into memory."""
    store = Store.open(tmp_path / "s")
    big = b"{" + b" " * (DOCUMENT_LIMIT + 10) + b"}"
    digest = store.put_bytes(big)
    assert store.read_bytes(digest) == big
    with pytest.raises(LayerforgeError, match="too large for an OCI document"):
        store.read_json(digest)
