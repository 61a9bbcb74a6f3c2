"""Resuming broken transfers against hand-written fake registries on 127.0.0.1: servers that
ignore ``Range``, answer a range that does not fit, end a body early without a length,
keep the bytes of a cut upload and report them (as the distribution spec says), or lose
the tail of an upload without saying so."""

from __future__ import annotations

import hashlib
import random
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from layerforge.errors import RegistryError
from layerforge.events import NullReporter
from layerforge.fsutil import sha256_digest
from layerforge.oci.layout import Descriptor, Store
from layerforge.oci.pull import pull_blob
from layerforge.oci.push import PushSession, upload
from layerforge.oci.reference import parse
from layerforge.oci.registry import Client

BLOB = random.Random(7).randbytes(3 << 20)
DIGEST = sha256_digest(BLOB)


def no_sleep(seconds: float) -> None:
    pass


@dataclass
class Fake:
    """What the fake registry does, and what it saw."""

    blob: bytes = BLOB
    ignore_range: bool = False  # always 200 with the whole body
    wrong_range: bool = False  # 206 that always starts at 0
    no_length: bool = False  # bodies without Content-Length, ended by closing
    cut_first: int | None = None  # the first blob GET (or PATCH) stops after this many bytes
    lose_tail: int = 0  # the first PATCH keeps all but this many bytes, silently
    lose_always: bool = False  # ... and so does every PATCH
    send_range: bool = True  # PATCH answers carry Range: 0-N
    reset_after_ping: bool = False
    hang_sessions: bool = False  # every request on an upload session is cut
    redirect: str = ""  # blob GETs answer 307 to this base URL (storage on another host)
    seen: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    sessions: dict[str, bytearray] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    cuts: int = 0
    started: int = 0  # upload sessions
    patched: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class Handler(BaseHTTPRequestHandler):
    fake: Fake
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if not self.fake.no_length or status != 200:
            self.send_header("Content-Length", str(len(body)))
        else:
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _hang_up(self) -> None:
        self.close_connection = True
        self.wfile.flush()
        self.connection.shutdown(socket.SHUT_RDWR)

    def _first_cut(self) -> int | None:
        with self.fake.lock:
            if self.fake.cut_first is None or self.fake.cuts:
                return None
            self.fake.cuts += 1
            return self.fake.cut_first

    def _dispatch(self) -> None:
        parts = urllib.parse.urlsplit(self.path)
        self.fake.seen.append((self.command, parts.path, dict(self.headers.items())))
        if parts.path == "/v2/":
            self._reply(200, body=b"{}")
        elif self.fake.reset_after_ping:
            self._hang_up()
        elif "/blobs/uploads/" in parts.path:
            self._upload(parts)
        elif self.command == "HEAD":
            digest = parts.path.rsplit("/", 1)[1]
            self._reply(200 if digest in self.fake.blobs else 404)
        else:
            self._download()

    def _download(self) -> None:
        if self.fake.redirect:
            target = f"{self.fake.redirect}/storage/{self.path.rsplit('/', 1)[1]}?sig=1"
            self._reply(307, {"Location": target})
            return
        blob = self.fake.blob
        start = 0
        asked = self.headers.get("Range", "")
        if asked and not self.fake.ignore_range:
            start = 0 if self.fake.wrong_range else int(asked[6:].rstrip("-"))
            status, headers = 206, {"Content-Range": f"bytes {start}-{len(blob) - 1}/{len(blob)}"}
        else:
            status, headers = 200, {}
        cut = self._first_cut()
        if cut is None:
            self._reply(status, headers, blob[start:])
            return
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        if not self.fake.no_length:
            self.send_header("Content-Length", str(len(blob) - start))
        self.end_headers()
        self.wfile.write(blob[start : start + cut])
        self._hang_up()

    def _upload(self, parts: urllib.parse.SplitResult) -> None:
        uid = parts.path.rsplit("/", 1)[1]
        fake = self.fake
        if self.command == "POST":
            fake.started += 1
            uid = str(fake.started)
            fake.sessions[uid] = bytearray()
            self._reply(202, {"Location": f"/v2/r/blobs/uploads/{uid}"})
            return
        if fake.hang_sessions:
            self._hang_up()
            return
        held = fake.sessions.get(uid)
        if held is None:
            self._reply(404, body=b'{"errors":[{"code":"BLOB_UPLOAD_UNKNOWN"}]}')
            return
        where = {"Location": f"/v2/r/blobs/uploads/{uid}", "Range": f"0-{max(len(held) - 1, 0)}"}
        if self.command == "GET":
            self._reply(204, where)
        elif self.command == "PATCH":
            self._patch(uid, held)
        else:
            digest = urllib.parse.parse_qs(parts.query)["digest"][0]
            del fake.sessions[uid]
            if sha256_digest(bytes(held)) != digest:
                self._reply(400, body=b'{"errors":[{"code":"DIGEST_INVALID"}]}')
                return
            fake.blobs[digest] = bytes(held)
            self._reply(201, {"Docker-Content-Digest": digest})

    def _patch(self, uid: str, held: bytearray) -> None:
        length = int(self.headers["Content-Length"])
        content_range = self.headers.get("Content-Range")
        if content_range and int(content_range.split("-")[0]) != len(held):
            self.rfile.read(length)
            self._reply(416)
            return
        cut = self._first_cut()
        if cut is not None:
            held += self.rfile.read(cut)
            self._hang_up()
            return
        data = self.rfile.read(length)
        self.fake.patched += 1
        if self.fake.lose_tail and (self.fake.lose_always or self.fake.patched == 1):
            data = data[: -self.fake.lose_tail]
        held += data
        headers = {"Location": f"/v2/r/blobs/uploads/{uid}"}
        if self.fake.send_range:
            headers["Range"] = f"0-{len(held) - 1}"
        self._reply(202, headers)

    do_GET = do_HEAD = do_POST = do_PATCH = do_PUT = _dispatch


def serve(fake: Fake) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("H", (Handler,), {"fake": fake}))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def download(fake: Fake, store: Store) -> None:
    for host in serve(fake):
        desc = Descriptor("application/octet-stream", DIGEST, len(BLOB))
        with Client(host, sleep=no_sleep) as client:
            client.ping()
            pull_blob(client, parse(f"{host}/r:t"), store, desc, NullReporter())


def blob_gets(fake: Fake) -> list[str]:
    return [h.get("Range", "") for m, p, h in fake.seen if m == "GET" and p.endswith(DIGEST)]


@pytest.mark.parametrize(
    ("fake", "ranges"),
    [
        (Fake(cut_first=1 << 20), ["", f"bytes={1 << 20}-"]),
        # a server that ignores Range: the second answer is the whole body, from 0
        (Fake(cut_first=1 << 20, ignore_range=True), ["", f"bytes={1 << 20}-"]),
        # a 206 that does not start where we stand: drop what we have, ask from 0
        (Fake(cut_first=1 << 20, wrong_range=True), ["", f"bytes={1 << 20}-", ""]),
        # no Content-Length: only the size in the manifest tells that the body was cut
        (Fake(cut_first=1 << 20, no_length=True), ["", f"bytes={1 << 20}-"]),
    ],
    ids=["resumed", "range-ignored", "range-wrong", "no-length"],
)
def test_a_cut_download_is_resumed_or_restarted_cleanly(
    fake: Fake, ranges: list[str], tmp_path: Path
) -> None:
    store = Store.open(tmp_path / "store")
    download(fake, store)
    assert store.read_bytes(DIGEST) == BLOB
    assert blob_gets(fake) == ranges
    assert [p.name for p in (tmp_path / "store/blobs/sha256").iterdir()] == [DIGEST[7:]]


def test_a_redirected_download_resumes_through_the_registry(tmp_path: Path) -> None:
    """The storage a registry redirects to breaks the body: the next request goes to the
    registry again (a signed URL may have expired) and the range reaches the storage."""
    storage = Fake(cut_first=1 << 20)
    store = Store.open(tmp_path / "store")
    for other in serve(storage):
        registry = Fake(redirect=f"http://{other}")
        download(registry, store)
    assert store.read_bytes(DIGEST) == BLOB
    assert blob_gets(registry) == ["", f"bytes={1 << 20}-"]
    assert [h.get("Range", "") for m, _, h in storage.seen if m == "GET"] == blob_gets(registry)


def test_a_wrong_blob_is_reported_with_what_arrived(tmp_path: Path) -> None:
    other = bytes(len(BLOB))
    store = Store.open(tmp_path / "store")
    with pytest.raises(RegistryError) as info:
        download(Fake(blob=other), store)
    message = str(info.value)
    assert info.value.exit_code == 3 and "does not match its digest" in message
    sent = hashlib.sha256(other).hexdigest()
    assert f"the registry sent {len(BLOB)} bytes whose sha256 is {sent}" in message
    assert f"expected {len(BLOB)} bytes with sha256 {DIGEST[7:]}" in message
    assert list((tmp_path / "store/blobs/sha256").iterdir()) == []


def test_a_fault_after_the_registry_answered_is_not_unreachable(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store")
    with pytest.raises(RegistryError) as info:
        download(Fake(reset_after_ping=True), store)
    message = str(info.value)
    assert info.value.exit_code == 3 and "unreachable" not in message
    assert f"download of blob {DIGEST}" in message and "attempts" in message
    assert "the connection was closed before an answer arrived" in message
    assert list((tmp_path / "store/blobs/sha256").iterdir()) == []


def push(fake: Fake, tmp_path: Path, blob: bytes = BLOB) -> str:
    store = Store.open(tmp_path / "store")
    store.put_bytes(blob)
    desc = Descriptor("application/octet-stream", sha256_digest(blob), len(blob))
    for host in serve(fake):
        with Client(host, sleep=no_sleep) as client:
            outcome = upload(PushSession(client, host), store, "r", desc)
    return outcome


def patches(fake: Fake) -> list[tuple[str, str, str]]:
    return [(p.rsplit("/", 1)[1], h.get("Content-Range", ""), h["Content-Length"])
            for m, p, h in fake.seen if m == "PATCH"]  # fmt: skip


def test_a_cut_upload_resumes_from_the_offset_the_session_reports(tmp_path: Path) -> None:
    fake = Fake(cut_first=1 << 20)
    assert push(fake, tmp_path) == "uploaded"
    assert fake.blobs == {DIGEST: BLOB}
    (first, second) = patches(fake)
    assert first == ("1", "", str(len(BLOB)))
    uid, content_range, length = second
    held = int(content_range.split("-")[0])
    # the session kept what arrived before the cut; only the rest was sent again
    assert uid == "1" and 0 < held <= 1 << 20 and content_range == f"{held}-{len(BLOB) - 1}"
    assert int(length) == len(BLOB) - held
    assert [m for m, _, _ in fake.seen].count("POST") == 1


def test_an_upload_short_of_its_tail_goes_on_from_the_reported_range(tmp_path: Path) -> None:
    fake = Fake(lose_tail=1000)
    assert push(fake, tmp_path) == "uploaded"
    assert fake.blobs == {DIGEST: BLOB}
    assert patches(fake)[1] == ("1", f"{len(BLOB) - 1000}-{len(BLOB) - 1}", "1000")


def test_digest_invalid_starts_a_fresh_session(tmp_path: Path) -> None:
    fake = Fake(lose_tail=1000, send_range=False)  # nothing says the tail was lost
    assert push(fake, tmp_path) == "uploaded"
    assert fake.blobs == {DIGEST: BLOB}
    assert [uid for uid, _, _ in patches(fake)] == ["1", "2"]
    assert patches(fake)[1] == ("2", "", str(len(BLOB)))


def test_an_upload_that_never_completes_says_how_far_it_got(tmp_path: Path) -> None:
    fake = Fake(lose_tail=1000, lose_always=True)
    with pytest.raises(RegistryError) as info:
        push(fake, tmp_path)
    message = str(info.value)
    assert info.value.exit_code == 3
    assert f"upload of blob {DIGEST} ({len(BLOB)} bytes) to r failed after 5 attempts" in message
    assert f"the registry held {len(BLOB) - 1000} of {len(BLOB)} bytes after a PATCH" in message
    assert fake.blobs == {}


def test_an_upload_session_that_keeps_breaking_is_named(tmp_path: Path) -> None:
    fake = Fake(hang_sessions=True)
    with pytest.raises(RegistryError) as info:
        push(fake, tmp_path)
    message = str(info.value)
    assert info.value.exit_code == 3 and "unreachable" not in message
    assert f"upload of blob {DIGEST} ({len(BLOB)} bytes) to r failed: GET " in message
    assert "broke 6 times: the connection was closed before an answer arrived" in message


def test_a_one_byte_blob_is_not_sent_twice(tmp_path: Path) -> None:
    """``Range: 0-0`` after a PATCH of one byte means that byte is held (an empty session
    says the same)."""
    fake = Fake()
    assert push(fake, tmp_path, b"x") == "uploaded"
    assert fake.blobs == {sha256_digest(b"x"): b"x"}
    assert len(patches(fake)) == 1
