"""A fault-injecting HTTP proxy on 127.0.0.1 in front of a real registry.

Every request is forwarded to the upstream registry (``Host`` kept, so the registry's
``Location`` headers point back at the proxy); request and response bodies are streamed.
A fault is injected either from a script (each :class:`Fault` hits the first request that
matches it, once) or at random from a seeded generator, up to a fixed number of faults:

- ``drop-request``: forward the headers and the first part of the request body to the
  registry, then cut both connections (the registry saw a partial body, the client no
  answer);
- ``short-request``: forward only the first part of a request body with a matching
  ``Content-Length`` (the registry accepts fewer bytes than were sent), drain the rest;
- ``drop-response``: relay the status, headers and the first part of the response body (or
  nothing at all, for an empty body), then cut the connection;
- ``short-response``: relay the first part of a response body with a ``Content-Length``
  that says it is complete;
- ``error``: answer 500 or 503 without forwarding anything.

A cut is a FIN or a RST (``SO_LINGER`` 0). The proxy stops by itself after ``lifetime``
seconds; its threads are daemons and its sockets time out.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import random
import socket
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

Kind = Literal["drop-request", "short-request", "drop-response", "short-response", "error"]
KINDS: tuple[Kind, ...] = ("drop-request", "short-request", "drop-response", "short-response",
                           "error")  # fmt: skip
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection"}
_CHUNK = 1 << 16


@dataclass(frozen=True)
class Fault:
    kind: Kind
    method: str = ""  # "" matches any method
    path: str = ""  # a substring of the request path ("" matches any)
    at: float = 0.5  # where in the body, as a fraction of its length
    rst: bool = False  # cut with a RST instead of a FIN


@dataclass(frozen=True)
class Injected:
    kind: Kind
    method: str
    path: str
    offset: int  # bytes of the body that went through before the fault
    length: int  # the body's full length


class Cut(Exception):
    """The handler cut the connection on purpose."""


class FaultProxy:
    def __init__(
        self,
        upstream: str,
        *,
        script: Sequence[Fault] = (),
        seed: int | None = None,
        faults: int = 0,
        rate: float = 0.25,
        lifetime: float = 600.0,
    ) -> None:
        self.upstream = upstream
        self.script = list(script)
        self.rng = random.Random(seed)
        self.budget = faults if seed is not None else 0
        self.rate = rate
        self.injected: list[Injected] = []
        self.requests: list[tuple[str, str, str]] = []  # method, path, Range header
        self.lock = threading.Lock()
        handler = type("Handler", (ProxyHandler,), {"proxy": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.timer = threading.Timer(lifetime, self.stop)
        self.timer.daemon = True
        self.timer.start()
        self._stopped = False

    def choose(self, method: str, path: str, rng: str, has_body: bool) -> Fault | None:
        """The fault for this request, if any (script first, then the seeded generator)."""
        with self.lock:
            self.requests.append((method, path, rng))
            for i, fault in enumerate(self.script):
                if (fault.method in ("", method)) and fault.path in path:
                    return self.script.pop(i)
            if self.budget <= 0 or self.rng.random() >= self.rate:
                return None
            kinds: list[Kind] = ["drop-response", "error"]
            if has_body:
                kinds.append("drop-request")
                if method == "PATCH":
                    kinds.append("short-request")
            if method == "GET" and "/blobs/" in path:
                kinds += ["short-response", "drop-response"]
            self.budget -= 1
            return Fault(self.rng.choice(kinds), at=self.rng.random(), rst=self.rng.random() < 0.5)

    def record(self, fault: Fault, method: str, path: str, offset: int, length: int) -> None:
        with self.lock:
            self.injected.append(Injected(fault.kind, method, path, offset, length))

    def kinds(self) -> set[str]:
        return {i.kind for i in self.injected}

    def stop(self) -> None:
        with self.lock:
            if self._stopped:
                return
            self._stopped = True
        self.timer.cancel()
        self.server.shutdown()
        self.server.server_close()


class ProxyHandler(BaseHTTPRequestHandler):
    proxy: FaultProxy
    protocol_version = "HTTP/1.1"
    timeout = 60

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- cutting --------------------------------------------------------------------------
    def _cut(self, fault: Fault, *others: http.client.HTTPConnection) -> None:
        for conn in others:
            conn.close()
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.wfile.flush()
        sock = self.connection
        if fault.rst:  # close the descriptor now: the kernel answers with a RST
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            os.close(sock.detach())
        else:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        raise Cut

    def _drain(self, length: int) -> None:
        while length > 0:
            chunk = self.rfile.read(min(length, _CHUNK))
            if not chunk:
                return
            length -= len(chunk)

    # -- one request ----------------------------------------------------------------------
    def _dispatch(self) -> None:
        try:
            self._handle()
        except Cut:
            pass
        except (OSError, http.client.HTTPException):  # the registry or the client hung up
            self.close_connection = True

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        rng = self.headers.get("Range", "")
        fault = self.proxy.choose(self.command, self.path, rng, length > 0)
        if fault is not None and fault.kind == "error":
            self._drain(length)
            self.proxy.record(fault, self.command, self.path, 0, length)
            status = 503 if fault.at < 0.5 else 500
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        upstream = http.client.HTTPConnection(self.proxy.upstream, timeout=60)
        try:
            self._forward(upstream, length, fault)
        finally:
            upstream.close()

    def _forward(
        self, upstream: http.client.HTTPConnection, length: int, fault: Fault | None
    ) -> None:
        send = length
        if fault is not None and fault.kind in ("drop-request", "short-request") and length:
            send = min(int(length * fault.at), length - 1)
        upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        for key, value in self.headers.items():
            if key.lower() not in _HOP:
                upstream.putheader(key, value)
        if length or self.command in ("PUT", "POST", "PATCH"):
            upstream.putheader("Content-Length", str(send))
        upstream.endheaders()
        left = send
        while left:
            chunk = self.rfile.read(min(left, _CHUNK))
            if not chunk:
                break
            upstream.send(chunk)
            left -= len(chunk)
        if fault is not None and send < length:
            self.proxy.record(fault, self.command, self.path, send, length)
            if fault.kind == "drop-request":
                self._cut(fault, upstream)
            self._drain(length - send)
        resp = upstream.getresponse()
        self._relay(resp, fault)

    def _relay(self, resp: http.client.HTTPResponse, fault: Fault | None) -> None:
        head = self.command == "HEAD"
        declared = resp.getheader("Content-Length")
        body = resp.read() if resp.chunked else None  # small (error documents)
        total = len(body) if body is not None else int(declared or 0)
        kind = fault.kind if fault is not None and not head else None
        cut_at = total
        if fault is not None and kind in ("drop-response", "short-response"):
            cut_at = int(total * fault.at)
            if kind == "short-response" and total:
                cut_at = min(cut_at, total - 1)
            self.proxy.record(fault, self.command, self.path, cut_at, total)
            if kind == "drop-response" and cut_at == 0:
                self._cut(fault)
        self.send_response_only(resp.status, resp.reason)
        for key, value in resp.getheaders():
            if key.lower() not in _HOP:
                self.send_header(key, value)
        length = (declared or "0") if head else str(cut_at if kind == "short-response" else total)
        self.send_header("Content-Length", length)
        self.end_headers()
        if head:
            return
        sent = self._copy(resp, body, cut_at)
        if fault is not None and kind == "drop-response":
            self._cut(fault)
        if sent < total:
            self.close_connection = True  # the upstream body is not drained

    def _copy(self, resp: http.client.HTTPResponse, body: bytes | None, cut_at: int) -> int:
        """The first ``cut_at`` bytes of the body to the client; how many went."""
        if body is not None:
            self.wfile.write(body[:cut_at])
            return min(cut_at, len(body))
        sent = 0
        while sent < cut_at:
            chunk = resp.read(min(_CHUNK, cut_at - sent))
            if not chunk:
                break
            self.wfile.write(chunk)
            sent += len(chunk)
        return sent

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _dispatch
