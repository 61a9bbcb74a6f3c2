"""A plain-HTTP front server of our own in front of a real registry, as a reverse proxy with
a request body limit (nginx's ``client_max_body_size``) would stand there.

- ``max_body``: a PATCH with a larger body is read and answered 413 (not forwarded).
- ``drop``: (n, bytes): the n-th PATCH that carries a ``Content-Range`` is cut after
  ``bytes`` (once): nothing of it reaches the registry and the client's connection is
  closed without an answer. (distribution cancels an upload session whose stored size
  differs from the offset in its ``_state``, so bytes of a broken PATCH that it wrote end
  the session; a resumable cut is one the registry did not see.)
- ``patches`` records each PATCH: (upload path, Content-Range, bytes forwarded, status;
  0 for the cut one).
"""

from __future__ import annotations

import http.client
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.integration.registry_server import free_port


class FrontServer:
    def __init__(
        self, upstream: str, max_body: int | None = None, drop: tuple[int, int] | None = None
    ) -> None:
        self.upstream = upstream
        self.max_body = max_body
        self.drop = drop
        self.ranged = 0  # PATCHes with a Content-Range seen
        self.patches: list[tuple[str, str | None, int, int]] = []
        self.lock = threading.Lock()
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.server = ThreadingHTTPServer(
            ("127.0.0.1", self.port), type("Handler", (FrontHandler,), {"front": self})
        )
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def refused(self) -> int:
        return sum(1 for p in self.patches if p[3] == 413)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class FrontHandler(BaseHTTPRequestHandler):
    front: FrontServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _upstream(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.front.upstream, timeout=300)
        conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        for key, value in headers.items():
            conn.putheader(key, value)
        conn.endheaders(body)
        resp = conn.getresponse()
        data = resp.read()
        out = {k: v for k, v in resp.getheaders() if k.lower() not in ("content-length",
               "transfer-encoding", "connection")}  # fmt: skip
        conn.close()
        return resp.status, out, data

    def _record(self, content_range: str | None, length: int, status: int) -> None:
        with self.front.lock:
            self.front.patches.append((self.path.split("?")[0], content_range, length, status))

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        headers = dict(self.headers.items())
        content_range = self.headers.get("Content-Range")
        front = self.front
        if self.command == "PATCH" and front.max_body is not None and length > front.max_body:
            self.rfile.read(length)  # read it all, then refuse (as nginx does)
            self._record(content_range, length, 413)
            self._reply(413, {"Content-Type": "text/html"}, b"<h1>413 Request Too Large</h1>")
            return
        cut = None
        if self.command == "PATCH" and content_range and front.drop is not None:
            with front.lock:
                front.ranged += 1
                if front.ranged == front.drop[0]:
                    cut, front.drop = front.drop[1], None
        if cut is not None:
            self.rfile.read(cut)
            self._record(content_range, 0, 0)
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)  # the client's PATCH breaks
            return
        body = self.rfile.read(length) if length else b""
        status, out, data = self._upstream(headers, body)
        if self.command == "PATCH":
            self._record(content_range, length, status)
        self._reply(status, out, data)

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _dispatch
