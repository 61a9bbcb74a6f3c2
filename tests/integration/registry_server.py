"""A real ``distribution`` registry on 127.0.0.1, and a Bearer token gate in front of it.

``Registry`` runs ``docker-registry serve`` with a temporary config (anonymous, or htpasswd
Basic auth). ``TokenGate`` is a tiny HTTP server written here: ``/token`` issues Bearer
tokens (checking Basic credentials) that expire after a few uses, and every ``/v2/``
request with a valid token is forwarded to the registry; others get a Bearer challenge.
"""

from __future__ import annotations

import base64
import http.client
import secrets
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.integration.tools import run


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Registry:
    def __init__(self, root: Path, users: dict[str, str] | None = None) -> None:
        self.root = root
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        root.mkdir(parents=True, exist_ok=True)
        auth = ""
        if users:
            lines = [run(["htpasswd", "-Bbn", u, p]).strip() for u, p in users.items()]
            (root / "htpasswd").write_text("\n".join(lines) + "\n")
            auth = f"auth:\n  htpasswd:\n    realm: test\n    path: {root / 'htpasswd'}\n"
        (root / "config.yml").write_text(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n"
            f"http:\n  addr: {self.host}\n{auth}"
        )
        self.log = (root / "registry.log").open("wb")
        self.proc = subprocess.Popen(
            ["docker-registry", "serve", str(root / "config.yml")],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self._wait()

    def _wait(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            conn = http.client.HTTPConnection(self.host, timeout=2)
            try:
                conn.request("GET", "/v2/")
                conn.getresponse().read()
            except OSError:
                time.sleep(0.1)
            else:
                return
            finally:
                conn.close()
        raise AssertionError(f"registry did not start: {(self.root / 'registry.log').read_text()}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)
        self.log.close()


class TokenGate:
    """Bearer auth in front of an anonymous registry; tokens die after ``uses`` requests."""

    def __init__(
        self,
        upstream: str,
        user: str,
        password: str,
        uses: int = 6,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """``tls``: a server context, to serve the API and the token realm over HTTPS."""
        self.upstream = upstream
        self.scheme = "https" if tls else "http"
        self.basic = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.uses = uses
        self.refresh_token = secrets.token_hex(8)  # an identity token, as config.json holds
        self.tokens: dict[str, int] = {}
        self.issued: list[dict[str, list[str]]] = []
        self.expired = 0
        self.lock = threading.Lock()
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.server = ThreadingHTTPServer(
            ("127.0.0.1", self.port), type("Handler", (GateHandler,), {"gate": self})
        )
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def issue(self, query: dict[str, list[str]]) -> str:
        token = secrets.token_hex(8)
        with self.lock:
            self.tokens[token] = self.uses
            self.issued.append(query)
        return token

    def accept(self, header: str) -> bool:
        token = header.removeprefix("Bearer ")
        with self.lock:
            left = self.tokens.get(token, 0)
            if left <= 0:
                if token in self.tokens:
                    self.expired += 1
                return False
            self.tokens[token] = left - 1
            return True

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class GateHandler(BaseHTTPRequestHandler):
    gate: TokenGate
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

    def _token(self) -> None:
        """GET with Basic credentials answers ``token``; POST of an OAuth2 refresh-token
        grant (identity tokens) answers ``access_token``."""
        if self.command == "POST":
            length = int(self.headers.get("Content-Length") or 0)
            query = urllib.parse.parse_qs(self.rfile.read(length).decode())
            valid = query.get("refresh_token") == [self.gate.refresh_token]
            key = "access_token"
        else:
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            valid = self.headers.get("Authorization") == self.gate.basic
            key = "token"
        if not valid:
            self._reply(401, {})
            return
        token = self.gate.issue(query)
        self._reply(200, {"Content-Type": "application/json"}, f'{{"{key}":"{token}"}}'.encode())

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if not self.gate.accept(self.headers.get("Authorization", "")):
            self.rfile.read(length)
            realm = f"{self.gate.scheme}://{self.gate.host}/token"
            challenge = f'Bearer realm="{realm}",service="gate",scope="repository:x:pull"'
            self._reply(401, {"WWW-Authenticate": challenge})
            return
        conn = http.client.HTTPConnection(self.gate.upstream, timeout=300)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "authorization"}
        headers["X-Forwarded-Proto"] = self.gate.scheme  # Location headers keep our scheme
        conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        for key, value in headers.items():
            conn.putheader(key, value)
        conn.endheaders()
        left = length
        while left:
            chunk = self.rfile.read(min(left, 1 << 20))
            conn.send(chunk)
            left -= len(chunk)
        resp = conn.getresponse()
        body = resp.read()
        out = {k: v for k, v in resp.getheaders() if k.lower() != "content-length"}
        out.pop("Transfer-Encoding", None)
        conn.close()
        self._reply(resp.status, out, body)

    def _dispatch(self) -> None:
        if self.path.startswith("/token"):
            self._token()
        else:
            self._forward()

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _dispatch
