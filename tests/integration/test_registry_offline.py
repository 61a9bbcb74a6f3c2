"""Issue 13 item 8: an unreachable registry costs once.

The tiny project's ``registry`` is a local port whose listener accepts each connection and
closes it at once (the registry never answers). The first ``plan`` asks it once (no retries:
the remote cache is optional) and warns once, saying how to work offline; the next ``plan``
remembers the failure and neither connects nor warns. ``--offline`` never connects. A registry
that answers again clears what was remembered.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.tiny import cli, tiny_project

pytestmark = pytest.mark.integration


class Slammer:
    """A TCP listener on 127.0.0.1 that counts connections and closes each one unanswered
    (or, once ``answer`` is set, answers every request with a 404)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.answer = False  # True: every request gets a 404 (the registry answers)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            if self.answer:
                threading.Thread(target=self._answer, args=(conn,), daemon=True).start()
            else:
                conn.close()

    @staticmethod
    def _answer(conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as reader:
            while True:
                lines = []
                while (line := reader.readline()) not in (b"\r\n", b"\n", b""):
                    lines.append(line)
                if not lines:
                    return
                conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def slammer() -> Iterator[Slammer]:
    server = Slammer()
    yield server
    server.close()


def _plan(project: Path, cache: Path, *extra: str) -> tuple[int, str]:
    code, _out, err = cli("plan", "-f", str(project), "--cache-dir", str(cache), *extra)
    return code, err


def test_unreachable_registry_costs_once(tmp_path: Path, slammer: Slammer) -> None:
    project = tiny_project(tmp_path / "p", registry=f"127.0.0.1:{slammer.port}")
    cache = tmp_path / "cache"
    assert cli("lock", "-f", str(project), "--cache-dir", str(cache))[0] == 0

    code, err = _plan(project, cache)
    assert code == 0, err
    assert slammer.connections == 1  # one attempt: no retries for an optional cache
    assert err.count("warning:") == 1 and "unreachable" in err, err
    assert "--offline" in err, err

    code, err = _plan(project, cache)
    assert code == 0, err
    assert slammer.connections == 1  # remembered: not asked again
    assert "warning:" not in err, err


def test_offline_never_asks_the_registry(
    tmp_path: Path, slammer: Slammer, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tiny_project(tmp_path / "p", registry=f"127.0.0.1:{slammer.port}")
    cache = tmp_path / "cache"
    assert cli("lock", "-f", str(project), "--cache-dir", str(cache))[0] == 0
    code, err = _plan(project, cache, "--offline")
    assert code == 0, err
    monkeypatch.setenv("LAYERFORGE_OFFLINE", "1")
    code, err = _plan(project, cache)
    assert code == 0, err
    assert slammer.connections == 0
    assert "warning:" not in err, err


def test_a_registry_that_answers_again_clears_the_memory(tmp_path: Path, slammer: Slammer) -> None:
    """Once the remembered failure is older than its few minutes (backdated here), the
    registry is asked again; it answers now (404: no such image), so nothing is remembered
    any more and nothing is said."""
    project = tiny_project(tmp_path / "p", registry=f"127.0.0.1:{slammer.port}")
    cache = tmp_path / "cache"
    assert cli("lock", "-f", str(project), "--cache-dir", str(cache))[0] == 0
    assert _plan(project, cache)[0] == 0
    (status,) = (cache / "registry-status").iterdir()
    doc = json.loads(status.read_text())
    doc["unreachable_at"] -= 3600
    status.write_text(json.dumps(doc))
    slammer.answer = True
    code, err = _plan(project, cache)
    assert code == 0 and "warning:" not in err, err
    assert slammer.connections > 1
    assert list((cache / "registry-status").iterdir()) == []
