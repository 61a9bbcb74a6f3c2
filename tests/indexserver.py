"""A PEP 503 simple index over HTTP on 127.0.0.1, from a thread, with optional basic auth.

``serve(wheels, auth=("u", "p"))`` serves ``/simple/NAME/`` pages linking ``/files/WHEEL``
(relative links, so the wheel URLs carry no credentials) and the wheels themselves. With
``auth``, every request without the right ``Authorization`` header gets a 401. ``hits``
counts the wheel downloads, per file name.
"""

from __future__ import annotations

import base64
import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from packaging.utils import canonicalize_name

from tests.wheelkit import sha256_of


@dataclass
class Index:
    url: str  # http://127.0.0.1:PORT/simple
    hits: dict[str, int] = field(default_factory=dict)
    unauthorized: list[str] = field(default_factory=list)  # paths refused with a 401


def _pages(wheels: list[Path]) -> dict[str, bytes]:
    by_name: dict[str, list[Path]] = {}
    for wheel in wheels:
        by_name.setdefault(canonicalize_name(wheel.name.split("-")[0]), []).append(wheel)
    pages: dict[str, bytes] = {}
    for name, files in by_name.items():
        links = "".join(
            f'<a href="../../files/{w.name}#sha256={sha256_of(w)}">{w.name}</a>\n'
            for w in sorted(files)
        )
        pages[f"/simple/{name}/"] = f"<html><body>\n{links}</body></html>\n".encode()
    root = "".join(f'<a href="{n}/">{n}</a>\n' for n in sorted(by_name))
    pages["/simple/"] = f"<html><body>\n{root}</body></html>\n".encode()
    return pages


@contextmanager
def serve(wheels: list[Path], auth: tuple[str, str] | None = None) -> Iterator[Index]:
    pages = _pages(wheels)
    files = {f"/files/{w.name}": w for w in wheels}
    expected = (
        None if auth is None else "Basic " + base64.b64encode(":".join(auth).encode()).decode()
    )
    index = Index("")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            self._answer(body=False)

        def do_GET(self) -> None:
            self._answer(body=True)

        def _answer(self, *, body: bool) -> None:
            path = self.path.split("?", 1)[0]
            if expected is not None and self.headers.get("Authorization") != expected:
                index.unauthorized.append(path)
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="index"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if path in pages:
                data, kind = pages[path], "text/html"
            elif path in files:
                data, kind = files[path].read_bytes(), "application/octet-stream"
                if body:
                    index.hits[files[path].name] = index.hits.get(files[path].name, 0) + 1
            else:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if body:
                self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            del format, args

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    index.url = f"http://127.0.0.1:{server.server_address[1]}/simple"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield index
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
