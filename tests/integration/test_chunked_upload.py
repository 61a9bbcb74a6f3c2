"""Uploads through a front server with a request body limit (``front_server.FrontServer`` on
127.0.0.1 in front of a real ``docker-registry``): chunks of LAYERFORGE_UPLOAD_CHUNK, the
fallback to smaller chunks after a 413, and a resume from the offset the registry reports
after a connection cut in the middle of a chunk."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from layerforge.fsutil import sha256_digest
from tests.integration.front_server import FrontServer
from tests.integration.registry_server import Registry
from tests.integration.tiny import cli, cli_json, local_digests, tiny_project
from tests.integration.tools import run

pytestmark = pytest.mark.integration

MIB = 1 << 20
BLOB = 3 * MIB  # random bytes: the service layer stays about this big compressed


@pytest.fixture
def upstream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY",
                 "no_proxy", "LAYERFORGE_UPLOAD_CHUNK"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    reg = Registry(tmp_path / "registry")
    yield reg
    reg.stop()


def _project(tmp_path: Path, front: FrontServer) -> tuple[Path, tuple[str, ...]]:
    project = tiny_project(tmp_path / "p", f"{front.host}/chunks")
    data = random.Random(14).randbytes(BLOB)
    (project / "svc/svc/weights.bin").write_bytes(data)
    cache = ("--cache-dir", str(tmp_path / "cache"))
    assert cli("lock", "-f", str(project), *cache)[0] == 0
    cli_json("build", "--no-verify", "--no-remote-cache", "-f", str(project), *cache)
    return project, cache


def _pushed(project: Path, upstream: Registry) -> None:
    """skopeo, straight at the registry, reads the digests of our store."""
    for node, digest in local_digests(project / ".layerforge").items():
        raw = run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                   f"docker://{upstream.host}/chunks/{node}:latest"])  # fmt: skip
        assert sha256_digest(raw.encode()) == digest


def _big_session(front: FrontServer) -> list[tuple[str | None, int, int]]:
    """The PATCHes (range, bytes, status) of the upload session that carried the most."""
    sessions: dict[str, list[tuple[str | None, int, int]]] = {}
    for path, content_range, length, status in front.patches:
        sessions.setdefault(path, []).append((content_range, length, status))
    return max(sessions.values(), key=lambda ps: sum(p[1] for p in ps if p[2] < 300))


def test_large_blob_uploads_in_chunks(
    upstream: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    front = FrontServer(upstream.host, max_body=int(1.1 * MIB))
    try:
        project, cache = _project(tmp_path, front)
        monkeypatch.setenv("LAYERFORGE_UPLOAD_CHUNK", "1MiB")
        code, _, err = cli("push", "-f", str(project), *cache)
        assert code == 0, err
        assert front.refused() == 0
        patches = _big_session(front)
        assert len(patches) >= 3 and all(length <= MIB for _, length, _ in patches)
        assert [r for r, _, _ in patches[:2]] == [f"0-{MIB - 1}", f"{MIB}-{2 * MIB - 1}"]
        _pushed(project, upstream)
    finally:
        front.stop()


def test_413_falls_back_to_smaller_chunks(
    upstream: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    front = FrontServer(upstream.host, max_body=int(1.1 * MIB))
    try:
        project, cache = _project(tmp_path, front)
        code, _, err = cli("push", "-f", str(project), *cache)
        assert code == 0, err
        assert "413" in err  # a warning says why the chunks got smaller
        assert front.refused() >= 1
        sent = [p for p in _big_session(front) if p[2] < 300]
        assert len(sent) >= 3 and all(length <= 1.1 * MIB for _, length, _ in sent)
        _pushed(project, upstream)
    finally:
        front.stop()


def test_413_below_the_smallest_chunk_is_a_clear_error(upstream: Registry, tmp_path: Path) -> None:
    front = FrontServer(upstream.host, max_body=MIB // 2)
    try:
        project, cache = _project(tmp_path, front)
        code, _, err = cli("push", "-f", str(project), *cache)
        assert code == 3, err
        assert "413" in err and "client_max_body_size" in err and "Traceback" not in err
    finally:
        front.stop()


def test_upload_resumes_from_registry_offset(
    upstream: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cut = 300_000
    front = FrontServer(upstream.host, drop=(2, cut))  # in the second chunk
    try:
        project, cache = _project(tmp_path, front)
        monkeypatch.setenv("LAYERFORGE_UPLOAD_CHUNK", "1MiB")
        code, _, err = cli("push", "-f", str(project), *cache)
        assert code == 0, err
        patches = _big_session(front)
        # the same session goes on from the offset the registry reports (GET -> Range):
        # the first chunk is not sent again, the cut one is
        second = f"{MIB}-{2 * MIB - 1}"
        assert [(r, s) for r, _, s in patches[:4]] == [
            (f"0-{MIB - 1}", 202),
            (second, 0),
            (second, 202),
            (f"{2 * MIB}-{3 * MIB - 1}", 202),
        ]
        size = sum(length for _, length, status in patches if status == 202)
        last = patches[-1][0]
        assert last is not None and size == int(last.split("-")[1]) + 1
        _pushed(project, upstream)
    finally:
        front.stop()


def test_upload_chunk_below_minimum_is_a_usage_error(
    upstream: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tiny_project(tmp_path / "p", f"{upstream.host}/chunks")
    cache = ("--cache-dir", str(tmp_path / "cache"))
    assert cli("lock", "-f", str(project), *cache)[0] == 0
    cli_json("build", "--no-verify", "--no-remote-cache", "-f", str(project), *cache)
    monkeypatch.setenv("LAYERFORGE_UPLOAD_CHUNK", "64KiB")
    code, _, err = cli("push", "-f", str(project), *cache)
    assert code == 2, err
    assert "LAYERFORGE_UPLOAD_CHUNK" in err and "1MiB" in err and "Traceback" not in err
