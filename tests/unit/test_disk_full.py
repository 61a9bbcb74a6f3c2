"""How a full disk is reported: the file and its area when the error names one, the free
space of the store and the cache, a tool's own "No space left on device" recognised."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from layerforge.diskfull import disk_full_error, full_disk_cause
from layerforge.errors import BuildError, DiskFullError, StoreError


def test_the_oserror_is_found_anywhere_in_the_chain() -> None:
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    with pytest.raises(StoreError) as wrapped:
        try:
            raise full
        except OSError:
            raise StoreError("cannot write the blob") from None
    assert full_disk_cause(wrapped.value) is full
    assert full_disk_cause(OSError(errno.EACCES, "Permission denied")) is None
    output = BuildError("bases.cpu.run[0] failed: ...\ntar: x: No space left on device")
    assert full_disk_cause(output) == str(output)


def test_a_named_file_is_placed_in_its_area(tmp_path: Path) -> None:
    store, cache = tmp_path / "store", tmp_path / "cache"
    store.mkdir()
    blob = store / "blobs/sha256/.tmp-1"
    error = disk_full_error(
        OSError(errno.ENOSPC, "No space left on device", str(blob)),
        [("store", store), ("cache", cache)],
    )
    assert isinstance(error, DiskFullError) and error.exit_code == 1
    assert error.path == str(blob)
    assert error.message.startswith(f"no space left on the device writing {blob} (in the store)")
    assert f"the store {store} (" in error.message
    assert f"the cache {cache} (" in error.message
    assert "the filesystem of the store" in error.message  # both on tmp_path's filesystem
    assert error.hint is not None and "layerforge gc" in error.hint


def test_a_tool_output_is_kept_under_the_summary(tmp_path: Path) -> None:
    text = "bases.cpu.run[0] failed with exit code 1\ncp: No space left on device"
    error = disk_full_error(text, [("cache", tmp_path)])
    assert error.message.splitlines()[0].startswith("no space left on the device; free space:")
    assert error.message.endswith(text)
