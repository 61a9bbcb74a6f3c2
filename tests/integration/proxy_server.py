"""A small forward proxy of our own on 127.0.0.1: ``CONNECT`` tunnels (HTTPS) and
absolute-URI requests (plain HTTP), as a corporate proxy serves them.

It counts tunnels and requests per target, can require ``Proxy-Authorization`` (407
otherwise), and refuses (403) any target that is not on 127.0.0.1, so a test can never reach
out through it.
"""

from __future__ import annotations

import base64
import http.client
import select
import socket
import threading
import urllib.parse
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.integration.registry_server import free_port


class ForwardProxy:
    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        self.auth = None
        if credentials is not None:
            self.auth = "Basic " + base64.b64encode(":".join(credentials).encode()).decode()
        self.tunnels: Counter[str] = Counter()  # host:port -> CONNECTs accepted
        self.requests: Counter[str] = Counter()  # host:port -> absolute-URI requests
        self.refused: Counter[int] = Counter()  # status -> count
        self.lock = threading.Lock()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = ThreadingHTTPServer(
            ("127.0.0.1", self.port), type("Handler", (ProxyHandler,), {"proxy": self})
        )
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class ProxyHandler(BaseHTTPRequestHandler):
    proxy: ForwardProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _refuse(self, status: int) -> bool:
        with self.proxy.lock:
            self.proxy.refused[status] += 1
        self.send_response(status)
        if status == 407:
            self.send_header("Proxy-Authenticate", 'Basic realm="test-proxy"')
        self.send_header("Content-Length", "0")
        self.end_headers()
        return False

    def _allowed(self, host: str) -> bool:
        if self.proxy.auth is not None and self.headers.get("Proxy-Authorization") != (
            self.proxy.auth
        ):
            return self._refuse(407)
        if host != "127.0.0.1":
            return self._refuse(403)
        return True

    def do_CONNECT(self) -> None:
        host, _, port = self.path.rpartition(":")
        if not self._allowed(host):
            return
        upstream = socket.create_connection((host, int(port)), timeout=30)
        with self.proxy.lock:
            self.proxy.tunnels[self.path] += 1
        self.send_response(200, "Connection established")
        self.end_headers()
        self.close_connection = True
        sockets = [self.connection, upstream]
        try:
            while True:
                ready, _, _ = select.select(sockets, [], [], 60)
                if not ready:
                    return
                for sock in ready:
                    data = sock.recv(1 << 16)
                    if not data:
                        return
                    (upstream if sock is self.connection else self.connection).sendall(data)
        except OSError:
            return
        finally:
            upstream.close()

    def _forward(self) -> None:
        parts = urllib.parse.urlsplit(self.path)
        if parts.scheme != "http" or not parts.hostname:
            self._refuse(400)
            return
        if not self._allowed(parts.hostname):
            return
        with self.proxy.lock:
            self.proxy.requests[parts.netloc] += 1
        length = int(self.headers.get("Content-Length") or 0)
        conn = http.client.HTTPConnection(parts.netloc, timeout=300)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.putrequest(self.command, target, skip_host=True, skip_accept_encoding=True)
        for key, value in self.headers.items():
            if key.lower() not in ("proxy-authorization", "proxy-connection"):
                conn.putheader(key, value)
        conn.endheaders()
        left = length
        while left:
            chunk = self.rfile.read(min(left, 1 << 20))
            conn.send(chunk)
            left -= len(chunk)
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        self.send_response(resp.status)
        for key, value in resp.getheaders():
            if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _forward
