"""The store lock: gc waits for the builds, pushes and verifies using a store (issue 10, 2)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from layerforge.cli import main
from layerforge.errors import StoreError
from layerforge.events import ListReporter
from layerforge.gc.storegc import collect
from layerforge.oci.layout import Descriptor, Store
from layerforge.oci.media import OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST


def test_gc_does_not_touch_a_store_in_use_and_says_why(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store")
    written = store.put_bytes(b"a layer a build wrote and has not tagged yet")
    events = ListReporter()
    with store.shared(), pytest.raises(StoreError, match="in use") as info:
        collect(store, 1, timeout=0.3, reporter=events)
    assert "--wait" in str(info.value)
    assert store.has_blob(written)
    assert [e.message for e in events.events if e.task == "gc"] == [
        f"waiting for the build, push or verify using {store.root} to finish"
    ]
    assert collect(store, 1, timeout=0).removed[0][0] == written  # free again: gc runs


def test_gc_waits_until_the_store_is_free(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store")
    written = store.put_bytes(b"untagged")
    holding, release = threading.Event(), threading.Event()

    def build() -> None:
        with store.shared():
            holding.set()
            release.wait()

    worker = threading.Thread(target=build)
    worker.start()
    events = ListReporter()
    result: list[object] = []
    gc = threading.Thread(target=lambda: result.append(collect(store, 1, reporter=events)))
    try:
        assert holding.wait(30)
        gc.start()
        while not events.events:  # gc says it waits, and waits
            assert gc.is_alive()
            gc.join(0.05)
        assert store.has_blob(written) and not result
    finally:
        release.set()
        worker.join()
    gc.join()
    assert not store.has_blob(written) and result


def test_shared_holders_do_not_wait_for_each_other(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store")
    with store.shared(), store.shared():
        assert (store.root / "layerforge" / "store.lock").is_file()


def test_image_problems_names_missing_and_short_blobs(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store")
    config_bytes = b'{"rootfs": {"type": "layers", "diff_ids": []}}'
    config = store.put_bytes(config_bytes)
    layer = store.put_bytes(b"layer bytes")
    gone = "sha256:" + "0" * 64
    manifest = (
        b'{"schemaVersion": 2, "config": {"mediaType": "%s", "digest": "%s", "size": %d},'
        b' "layers": [{"mediaType": "%s", "digest": "%s", "size": 99},'
        b' {"mediaType": "%s", "digest": "%s", "size": 1}]}'
        % (OCI_CONFIG.encode(), config.encode(), len(config_bytes), OCI_LAYER_GZIP.encode(),
           layer.encode(), OCI_LAYER_GZIP.encode(), gone.encode())
    )  # fmt: skip
    digest = store.put_bytes(manifest)
    desc = Descriptor(OCI_MANIFEST, digest, len(manifest))
    assert sorted(store.image_problems(desc)) == [
        f"{gone} ({OCI_LAYER_GZIP}) is missing",
        f"{layer} has 11 bytes, not 99",
    ]
    assert store.image_problems(desc, layers=False) == [f"{layer} has 11 bytes, not 99"]
    assert store.image_problems(Descriptor(OCI_MANIFEST, gone, 1)) == [
        f"{gone} ({OCI_MANIFEST}) is missing"
    ]


def test_gc_verb_gives_up_after_wait_seconds_with_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["init", str(tmp_path)]) == 0
    store = Store.open(tmp_path / "store")
    args = ["gc", "-f", str(tmp_path), "--store", str(store.root), "--cache-dir",
            str(tmp_path / "cache"), "--no-caches"]  # fmt: skip
    capsys.readouterr()
    with store.shared():
        assert main([*args, "--wait", "0.2"]) == 1
    err = capsys.readouterr().err
    assert f"waiting for the build, push or verify using {store.root} to finish" in err
    assert "is in use" in err and "--wait SECONDS" in err and "Traceback" not in err
    assert main([*args, "--wait", "0"]) == 0  # nobody holds it now


def test_gc_removes_the_temporary_files_of_killed_writes(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store")
    kept = store.put_bytes(b"{}")
    store.tag("x:latest", Descriptor(OCI_MANIFEST, kept, 2))
    half = store.root / "blobs" / "sha256" / ".tmp-0123456789abcdef"
    half.write_bytes(b"half a layer")  # what a kill -9 during a blob write leaves
    index = store.root / ".tmp-fedcba9876543210"
    index.write_bytes(b"{")
    dry = collect(store, 1, dry_run=True)
    assert half.is_file() and dry.leftovers == (
        (".tmp-fedcba9876543210", 1),
        ("blobs/sha256/.tmp-0123456789abcdef", 12),
    )
    result = collect(store, 1)
    assert result.leftovers == dry.leftovers and result.freed == 13
    assert not half.exists() and not index.exists() and store.has_blob(kept)
    assert result.to_json()["leftovers"][1] == {"path": "blobs/sha256/.tmp-0123456789abcdef",
                                                "size": 12}  # fmt: skip
