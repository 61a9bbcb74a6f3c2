"""What staging costs on disk: uv hardlinks the installed files from its cache when that is
on the same filesystem, so the preflight must not count them as copies (a CUDA torch stack,
4 GB of wheels, was refused on a 14 GB runner it fits on)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from layerforge.builder.disk import INSTALL_FACTOR, LINKED_FACTOR, staging_factor


def test_same_filesystem_counts_only_the_rewritten_files(tmp_path: Path) -> None:
    (tmp_path / "uv").mkdir()
    assert staging_factor(tmp_path / "cache" / "not-yet", tmp_path / "uv") == LINKED_FACTOR
    assert LINKED_FACTOR < INSTALL_FACTOR / 10


def test_unknown_or_other_filesystem_counts_copies(tmp_path: Path) -> None:
    assert staging_factor(tmp_path, None) == INSTALL_FACTOR
    shm = Path("/dev/shm")
    if os.stat(shm).st_dev == os.stat(tmp_path).st_dev:  # pragma: no cover - machine shape
        pytest.fail("/dev/shm is expected to be its own filesystem (tmpfs) here")
    assert staging_factor(tmp_path, shm) == INSTALL_FACTOR
