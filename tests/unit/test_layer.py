"""The layer writer: deterministic tars, one-pass digests, gzip/zstd that others can read."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import zstandard

from layerforge.errors import BuildError
from layerforge.oci import media
from layerforge.oci.compress import open_layer
from layerforge.oci.layout import Store
from layerforge.oci.tarball import CHUNK, Entry, entries_from_tree, normalize, tar_chunks
from layerforge.oci.write import Compression, write_layer, write_layer_to_store
from tests.conftest import require_tools


def make_tree(root: Path) -> Path:
    (root / "pkg/sub").mkdir(parents=True)
    (root / "pkg/__init__.py").write_text("x = 1\n")
    (root / "pkg/sub/data.bin").write_bytes(os.urandom(3000))
    (root / "pkg/run.sh").write_text("#!/bin/sh\n")
    (root / "pkg/run.sh").chmod(0o755)
    (root / "pkg/link").symlink_to("/usr/bin/python3.11")
    os.link(root / "pkg/__init__.py", root / "pkg/alias.py")
    return root


def layer_bytes(entries: list[Entry], compression: str = "gzip") -> tuple[bytes, bytes]:
    out = io.BytesIO()
    blob = write_layer(entries, out, compression=compression)  # type: ignore[arg-type]
    data = out.getvalue()
    raw = gzip.decompress(data) if compression == "gzip" else _unzstd(data)
    assert blob.digest == "sha256:" + hashlib.sha256(data).hexdigest()
    assert blob.diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert blob.size == len(data)
    assert blob.uncompressed_size == len(raw)
    return data, raw


def _unzstd(data: bytes) -> bytes:
    return zstandard.ZstdDecompressor().decompressobj().decompress(data)


def members(raw: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        return tar.getmembers()


def test_tar_rules(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "t")
    _, raw = layer_bytes(entries_from_tree(root, "opt/venv"))
    infos = members(raw)
    names = [i.name for i in infos]
    assert names == sorted(names)
    assert names[:3] == ["opt", "opt/venv", "opt/venv/pkg"]  # explicit parents
    for info in infos:
        assert (info.uid, info.gid, info.uname, info.gname, info.mtime) == (0, 0, "", "", 0)
    by_name = {i.name: i for i in infos}
    assert by_name["opt"].mode == 0o755
    assert by_name["opt/venv/pkg/run.sh"].mode == 0o755
    assert by_name["opt/venv/pkg/link"].issym()
    assert by_name["opt/venv/pkg/link"].linkname == "/usr/bin/python3.11"
    # hardlinks point at the first path in sorted order
    assert by_name["opt/venv/pkg/__init__.py"].isfile()
    assert by_name["opt/venv/pkg/alias.py"].islnk()
    assert by_name["opt/venv/pkg/alias.py"].linkname == "opt/venv/pkg/__init__.py"
    assert len(raw) % tarfile.RECORDSIZE == 0


def test_identical_content_gives_identical_digests(tmp_path: Path) -> None:
    a = make_tree(tmp_path / "a")
    b = tmp_path / "b"
    shutil.copytree(a, b, symlinks=True)
    os.utime(b / "pkg/__init__.py", (12345, 12345))
    (b / "pkg/alias.py").unlink()
    os.link(b / "pkg/__init__.py", b / "pkg/alias.py")
    for compression in ("gzip", "zstd"):
        first, _ = layer_bytes(entries_from_tree(a, "x"), compression)
        second, _ = layer_bytes(entries_from_tree(b, "x"), compression)
        assert first == second


def test_mtime_is_clamped_to_the_epoch_given(tmp_path: Path) -> None:
    entries = [Entry("a.txt", "file", 0o644, 1, data=b"a")]
    out = io.BytesIO()
    write_layer(entries, out, mtime=1_700_000_000)
    assert {m.mtime for m in members(gzip.decompress(out.getvalue()))} == {1_700_000_000}


def test_large_stream_spans_many_gzip_chunks_and_stays_one_member(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(CHUNK) * 3 + b"tail")
    entries = [Entry("big.bin", "file", 0o644, big.stat().st_size, source=big)]
    data, raw = layer_bytes(entries)
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        extracted = tar.extractfile("big.bin")
        assert extracted is not None
        assert extracted.read() == big.read_bytes()
    assert data[:2] == b"\x1f\x8b"
    assert data[4:8] == b"\0\0\0\0"  # no timestamp in the gzip header
    require_tools("gzip")
    path = tmp_path / "layer.gz"
    path.write_bytes(data)
    subprocess.run(["gzip", "-t", str(path)], check=True)


def test_zstd_round_trip_with_the_cli(tmp_path: Path) -> None:
    """The zstd tool (not the library that wrote it) reads our layer back to the very tar
    whose sha256 is the diff_id, and the files come out of that tar unchanged."""
    require_tools("zstd")
    root = make_tree(tmp_path / "t")
    out = io.BytesIO()
    blob = write_layer(entries_from_tree(root), out, compression="zstd")
    path = tmp_path / "layer.zst"
    path.write_bytes(out.getvalue())
    subprocess.run(["zstd", "-q", "-t", str(path)], check=True)  # a whole frame, checksum ok
    raw = subprocess.run(["zstd", "-q", "-d", "-c", str(path)], capture_output=True, check=True)
    assert blob.diff_id == "sha256:" + hashlib.sha256(raw.stdout).hexdigest()
    assert blob.uncompressed_size == len(raw.stdout)
    with tarfile.open(fileobj=io.BytesIO(raw.stdout)) as tar:
        for name in ("pkg/__init__.py", "pkg/sub/data.bin", "pkg/run.sh"):
            member = tar.extractfile(name)
            assert member is not None, name
            assert member.read() == (root / name).read_bytes(), name
        assert tar.getmember("pkg/link").linkname == "/usr/bin/python3.11"


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_one_decoder_reads_a_layer_by_media_type_or_by_its_first_bytes(
    tmp_path: Path, compression: Compression
) -> None:
    root = make_tree(tmp_path / "t")
    out = io.BytesIO()
    blob = write_layer(entries_from_tree(root), out, compression=compression)
    path = tmp_path / "blob"
    path.write_bytes(out.getvalue())
    plain = tmp_path / "plain"
    for media_type in (blob.media_type, None):
        with open_layer(path, media_type) as stream:
            raw = stream.read()
        assert blob.diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()
        plain.write_bytes(raw)
    for media_type in (media.OCI_LAYER_TAR, None):
        with open_layer(plain, media_type) as stream:
            assert stream.read() == raw


def test_exclude_skips_directories_and_files(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "t")
    entries = entries_from_tree(root, "", exclude=lambda rel: rel in ("pkg/sub", "pkg/run.sh"))
    paths = [e.path for e in entries]
    assert "pkg/sub" not in paths
    assert "pkg/sub/data.bin" not in paths
    assert "pkg/run.sh" not in paths


@pytest.mark.parametrize("bad", ["/etc/passwd", "a/../../etc", "a//b", "./a", ""])
def test_bad_member_names_are_refused(bad: str) -> None:
    with pytest.raises(BuildError):
        write_layer([Entry(bad, "file", 0o644, 0, data=b"")], io.BytesIO())


def test_duplicates_and_files_under_files_are_refused() -> None:
    with pytest.raises(BuildError, match="twice"):
        write_layer([Entry("a", "dir"), Entry("a", "dir")], io.BytesIO())
    with pytest.raises(BuildError, match="non-directory"):
        write_layer([Entry("a", "file", data=b"", size=0), Entry("a/b", "dir")], io.BytesIO())


def test_progress_is_reported(tmp_path: Path) -> None:
    seen: list[int] = []
    entries = [Entry("a", "file", 0o644, 10, data=b"0123456789")]
    blob = write_layer(entries, io.BytesIO(), progress=seen.append)
    assert seen
    assert seen[-1] == blob.uncompressed_size


def test_store_write_is_atomic_and_verified(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store")
    blob = write_layer_to_store(store, [Entry("a", "file", 0o644, 1, data=b"a")])
    assert store.has_blob(blob.digest)
    missing = tmp_path / "vanished.txt"
    with pytest.raises(FileNotFoundError):
        write_layer_to_store(store, [Entry("b", "file", 0o644, 5, source=missing)])
    names = [p.name for p in (tmp_path / "store/blobs/sha256").iterdir()]
    assert names == [blob.digest.split(":")[1]]


@pytest.mark.timeout(60)
def test_a_file_larger_than_every_buffer_does_not_deadlock(tmp_path: Path) -> None:
    """Regression: full chunks of one large file were held back until the file ended, so a
    file larger than the whole buffer pool waited forever for a free buffer."""
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * 4096)  # 1 MiB, 64 times the pool below
    entries = normalize([Entry("big.bin", "file", 0o644, big.stat().st_size, source=big)])
    pieces = []
    for chunk in tar_chunks(entries, 0, size=4096, buffers=4):
        pieces.append(bytes(chunk.view))
        chunk.release()
        chunk.release()
    with tarfile.open(fileobj=io.BytesIO(b"".join(pieces))) as tar:
        member = tar.extractfile("big.bin")
        assert member is not None and member.read() == big.read_bytes()


@pytest.mark.timeout(120)
def test_write_layer_with_a_file_larger_than_the_buffer_pool(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    with big.open("wb") as fh:
        fh.truncate(64 << 20)  # more than 12 buffers of 4 MiB
    out = io.BytesIO()
    blob = write_layer([Entry("big.bin", "file", 0o644, 64 << 20, source=big)], out)
    assert blob.uncompressed_size > 64 << 20
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(out.getvalue()))) as tar:
        assert tar.getmember("big.bin").size == 64 << 20
