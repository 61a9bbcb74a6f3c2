"""Item 2 of issue 16: an SBOM pushed to a registry **with** the referrers API is listed by
the registry itself, and no fallback tag is written (the registry in the integration tests,
distribution 2.8, has no referrers API: there the tag schema is used, see
tests/integration/test_sbom_push.py).

The registry here is a small in-memory one written for this test: blobs (monolithic and
chunked uploads), manifests, ``OCI-Subject`` on a manifest with a subject, and
``GET /v2/REPO/referrers/DIGEST``.
"""

from __future__ import annotations

import hashlib
import json
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from layerforge.oci.artifact import fallback_tag
from layerforge.oci.push import PushSession, push_referrer
from layerforge.oci.registry import Client
from layerforge.sbom.attach import write_sbom
from tests.unit.test_sbom import image


class Registry:
    def __init__(self, *, referrers: bool) -> None:
        self.referrers = referrers
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[str, tuple[str, bytes]] = {}  # reference -> (media type, bytes)
        self.uploads: dict[str, bytes] = {}


class Handler(BaseHTTPRequestHandler):
    reg: Registry
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        del format, args

    def _reply(self, status: int, body: bytes = b"", **headers: str) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key.replace("_", "-"), value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _route(self) -> tuple[str, str, dict[str, list[str]]]:
        url = urllib.parse.urlsplit(self.path)
        parts = url.path.split("/")  # "", "v2", repo..., kind, rest
        i = max(i for i, p in enumerate(parts) if p in ("blobs", "manifests", "referrers"))
        return parts[i], "/".join(parts[i + 1 :]), urllib.parse.parse_qs(url.query)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        kind, rest, _ = self._route()
        if kind == "blobs" and rest in self.reg.blobs:
            self._reply(200, self.reg.blobs[rest], Docker_Content_Digest=rest)
        elif kind == "manifests" and rest in self.reg.manifests:
            media, raw = self.reg.manifests[rest]
            digest = "sha256:" + hashlib.sha256(raw).hexdigest()
            self._reply(200, raw, Content_Type=media, Docker_Content_Digest=digest)
        elif kind == "referrers" and self.reg.referrers:
            found = []
            for media, raw in {r: m for r, m in self.reg.manifests.items() if ":" in r}.values():
                doc = json.loads(raw)
                if doc.get("subject", {}).get("digest") == rest:
                    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
                    found.append({"mediaType": media, "digest": digest, "size": len(raw),
                                  "artifactType": doc.get("artifactType")})  # fmt: skip
            index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                     "manifests": found}  # fmt: skip
            body = json.dumps(index).encode()
            self._reply(200, body, Content_Type="application/vnd.oci.image.index.v1+json")
        else:
            self._reply(404, b"404 page not found")

    def do_POST(self) -> None:
        self._body()
        uid = str(len(self.reg.uploads))
        self.reg.uploads[uid] = b""
        self._reply(202, Location=f"/upload/{uid}", Range="0-0")

    def do_PATCH(self) -> None:
        uid = self.path.split("?")[0].rsplit("/", 1)[1]
        self.reg.uploads[uid] += self._body()
        self._reply(202, Location=f"/upload/{uid}", Range=f"0-{len(self.reg.uploads[uid]) - 1}")

    def do_PUT(self) -> None:
        if self.path.startswith("/upload/"):
            path, _, query = self.path.partition("?")
            uid = path.rsplit("/", 1)[1]
            data = self.reg.uploads.pop(uid) + self._body()
            digest = urllib.parse.parse_qs(query)["digest"][0]
            self.reg.blobs[digest] = data
            self._reply(201, Docker_Content_Digest=digest)
            return
        _, reference, _ = self._route()
        raw = self._body()
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        media = self.headers.get("Content-Type", "")
        self.reg.manifests[reference] = self.reg.manifests[digest] = (media, raw)
        headers = {"Docker_Content_Digest": digest}
        subject = json.loads(raw).get("subject")
        if subject and self.reg.referrers:
            headers["OCI_Subject"] = subject["digest"]
        self._reply(201, b"", **headers)


def serve(reg: Registry) -> Iterator[str]:
    handler = type("Bound", (Handler,), {"reg": reg})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("referrers", [True, False])
def test_referrer_route_follows_the_registry(tmp_path: Path, referrers: bool) -> None:
    store, record, lock = image(tmp_path)
    artifact = write_sbom(store, record, lock, 0)
    reg = Registry(referrers=referrers)
    for host in serve(reg):
        with Client(host) as client:
            session = PushSession(client, host)
            result = push_referrer(session, store, artifact, "acme/svc")
            again = push_referrer(session, store, artifact, "acme/svc")
    assert result.route == ("referrers" if referrers else "tag-schema")
    assert again.route == result.route and again.uploaded_bytes == 0
    assert artifact.manifest.digest in reg.manifests
    tag = fallback_tag(record.manifest.digest)
    if referrers:
        assert tag not in reg.manifests  # the registry lists it: no fallback index
    else:
        index = json.loads(reg.manifests[tag][1])
        assert [m["digest"] for m in index["manifests"]] == [artifact.manifest.digest]
        assert index["manifests"][0]["artifactType"] == "application/vnd.cyclonedx+json"
