"""Item 3 of issue 16: `layerforge audit` against a local OSV-compatible server.

OSV's real API is not reachable from this machine: the test serves records in OSV's format
from an ``http.server`` thread on 127.0.0.1 (``POST /v1/querybatch``, ``GET /v1/vulns/ID``),
matching a query by the ``affected[].versions`` a record lists. The fleet: a root filesystem
with a dpkg status (libssl3, built from the source package openssl), a base pinning
``lfvuln`` 1.0 (vulnerable, fixed in 1.1), ``lfused`` (imported by
service ``a``) and ``lfunused`` (import name ``lfunused_pkg``, imported by no service).
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tests.integration.tiny import cli
from tests.wheelkit import make_wheel

pytestmark = pytest.mark.integration

STATUS = """Package: libssl3
Status: install ok installed
Architecture: amd64
Source: openssl
Version: 3.0.20-1~deb12u2
"""

RECORDS: list[dict[str, Any]] = [
    {
        "schema_version": "1.6.0",
        "id": "GHSA-lfvu-ln00-0001",
        "modified": "2026-06-01T00:00:00Z",
        "summary": "lfvuln runs code from its input",
        "database_specific": {"severity": "HIGH"},
        "affected": [
            {
                "package": {"ecosystem": "PyPI", "name": "lfvuln"},
                "ranges": [
                    {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.1"}]}
                ],
                "versions": ["0.9", "1.0"],
            }
        ],
    },
    {
        "schema_version": "1.6.0",
        "id": "DSA-9999-1",
        "modified": "2026-11-29T00:00:00Z",
        "summary": "openssl security update",
        "affected": [
            {
                "package": {"ecosystem": "Debian:12", "name": "openssl"},
                "ranges": [
                    {
                        "type": "ECOSYSTEM",
                        "events": [{"introduced": "0"}, {"fixed": "3.0.22-1~deb12u2"}],
                    }
                ],
                "versions": ["3.0.20-1~deb12u1", "3.0.20-1~deb12u2"],
            }
        ],
    },
]


def _file(name: str, version: str, uploaded: str, **extra: object) -> dict[str, object]:
    return {"filename": f"{name}-{version}-py3-none-any.whl", "url": "x", "hashes": {},
            "upload-time": uploaded, **extra}  # fmt: skip


INDEX = {
    "lfvuln": [
        _file("lfvuln", "1.0", "2025-01-02T03:04:05Z"),
        _file("lfvuln", "1.1", "2026-03-01T10:00:00Z"),
        _file("lfvuln", "1.2", "2026-09-01T10:00:00Z", yanked="broken"),
        _file("lfvuln", "2.0rc1", "2026-10-01T10:00:00Z"),
    ],
    "lfused": [_file("lfused", "1.0", "2025-01-02T03:04:05Z")],
}

MANIFEST = """
[project]
name = "audited"
python = "3.11"
find_links = ["wheels"]

[bases.base]
from = "rootfs:os"
requirements = ["lfvuln==1.0", "lfused==1.0", "lfunused==1.0"]

[services.a]
base = "base"
source = "a"
command = ["python", "-m", "a"]
"""


class Osv(BaseHTTPRequestHandler):
    queries: ClassVar[list[dict[str, Any]]] = []

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        if self.path != "/v1/querybatch":
            self._send(404, {"message": "not found"})
            return
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        results = []
        for query in body["queries"]:
            type(self).queries.append(query)
            package = query["package"]
            hits = [
                {"id": r["id"], "modified": r["modified"]}
                for r in RECORDS
                for a in r["affected"]
                if a["package"] == {"ecosystem": package["ecosystem"], "name": package["name"]}
                and query["version"] in a["versions"]
            ]
            results.append({"vulns": hits} if hits else {})
        self._send(200, {"results": results})

    def do_GET(self) -> None:
        if self.path.startswith("/simple/"):  # a PEP 691 JSON index, for outdated pins
            name = self.path.removeprefix("/simple/").strip("/")
            files = INDEX.get(name)
            self._send(200 if files else 404, {"name": name, "files": files or []})
            return
        vid = self.path.removeprefix("/v1/vulns/")
        found = [r for r in RECORDS if r["id"] == vid]
        self._send(200 if found else 404, found[0] if found else {"message": "not found"})

    def log_message(self, format: str, *args: Any) -> None:
        del format, args


@pytest.fixture
def osv() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Osv)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def fleet(tmp_path: Path) -> tuple[str, ...]:
    root = tmp_path / "p"
    (root / "os/usr/bin").mkdir(parents=True)
    (root / "os/usr/bin/python3.11").write_text("#!/bin/sh\n")
    (root / "os/etc").mkdir()
    (root / "os/etc/os-release").write_text('ID=debian\nVERSION_ID="12"\n')
    (root / "os/var/lib/dpkg").mkdir(parents=True)
    (root / "os/var/lib/dpkg/status").write_text(STATUS)
    wheels = root / "wheels"
    make_wheel(wheels, "lfvuln", "1.0", license_expression="MIT")
    make_wheel(wheels, "lfused", "1.0", license_expression="Apache-2.0")
    make_wheel(wheels, "lfunused", "1.0", package=False,
               files={"lfunused_pkg/__init__.py": b""})  # fmt: skip
    (root / "a/a").mkdir(parents=True)
    (root / "a/a/__main__.py").write_text("import lfused\nfrom lfvuln import main\n")
    (root / "layerforge.toml").write_text(MANIFEST)
    args = ("-f", str(root), "--cache-dir", str(tmp_path / "cache"))
    assert cli("lock", *args)[0] == 0
    assert cli("build", "--no-verify", *args)[0] == 0
    return args


def audit(*args: str) -> tuple[int, dict[str, Any], str]:
    code, out, err = cli("audit", "--json", *args)
    return code, json.loads(out) if out else {}, err


def test_audit_against_local_osv(osv: str, fleet: tuple[str, ...]) -> None:
    code, doc, err = audit("--osv-url", osv, "--index-url", f"{osv}/simple", *fleet)
    assert code == 0, err
    vulns = doc["vulnerabilities"]
    assert vulns["status"] == "ok"
    found = {f["id"]: f for f in vulns["findings"]}
    assert set(found) == {"GHSA-lfvu-ln00-0001", "DSA-9999-1"}
    lf = found["GHSA-lfvu-ln00-0001"]
    assert (lf["package"], lf["version"], lf["severity"], lf["fixed"]) == (
        "lfvuln", "1.0", "high", ["1.1"],
    )  # fmt: skip
    assert lf["nodes"] == ["base", "a"]
    ssl = found["DSA-9999-1"]
    assert (ssl["ecosystem"], ssl["package"], ssl["version"], ssl["fixed"]) == (
        "Debian:12", "openssl", "3.0.20-1~deb12u2", ["3.0.22-1~deb12u2"],
    )  # fmt: skip
    assert ssl["severity"] == "unknown"
    # Debian is asked by source package, PyPI by canonical name
    asked = {(q["package"]["ecosystem"], q["package"]["name"]) for q in Osv.queries}
    assert ("Debian:12", "openssl") in asked and ("Debian:12", "libssl3") not in asked

    code, _, err = audit(
        "--osv-url", osv, "--index-url", f"{osv}/simple", "--fail-on", "high", *fleet
    )
    assert code == 1 and "lfvuln 1.0 (GHSA-lfvu-ln00-0001)" in err
    assert (
        audit("--osv-url", osv, "--index-url", f"{osv}/simple", "--fail-on", "critical", *fleet)[0]
        == 0
    )


def test_audit_unused_package_and_licenses(osv: str, fleet: tuple[str, ...]) -> None:
    code, doc, err = audit("--offline", *fleet)
    assert code == 0, err
    assert doc["unused"]["packages"] == [{"node": "base", "package": "lfunused", "version": "1.0"}]
    assert doc["unused"]["justified"] == {"base:lfused": ["a"], "base:lfvuln": ["a"]}
    assert doc["licenses"]["groups"] == {"Apache-2.0": ["lfused==1.0"], "MIT": ["lfvuln==1.0"]}
    assert doc["licenses"]["unknown"] == ["lfunused==1.0"]
    assert doc["vulnerabilities"]["status"] == "skipped"
    assert "--offline" in doc["vulnerabilities"]["reason"]
    html = Path(fleet[1]).parent / "out" / "report.html"
    code, out, _ = cli("audit", "--offline", "--html", str(html), *fleet)  # the terminal tables
    assert code == 0
    assert "lfunused" in out and "Apache-2.0" in out
    page = html.read_text()
    assert "<h2>Audit</h2>" in page and "<h2>Layers per image</h2>" in page
    assert "<td>lfunused</td>" in page and "Skipped: --offline" in page


def test_audit_osv_unreachable(fleet: tuple[str, ...]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    code, doc, err = audit("--osv-url", closed, "--index-url", closed, "--fail-on", "low", *fleet)
    assert code == 0, err
    assert doc["vulnerabilities"]["status"] == "skipped"
    assert "could not be asked" in doc["vulnerabilities"]["reason"]
    assert doc["licenses"]["groups"]["MIT"] == ["lfvuln==1.0"]
    assert doc["outdated"]["status"] == "skipped"
    assert "could not be asked" in doc["outdated"]["reason"]


def test_audit_with_osv_exports(tmp_path: Path, fleet: tuple[str, ...]) -> None:
    db = tmp_path / "osv"
    for record in RECORDS:
        ecosystem = record["affected"][0]["package"]["ecosystem"].split(":")[0]
        (db / ecosystem).mkdir(parents=True, exist_ok=True)
        (db / ecosystem / f"{record['id']}.json").write_text(json.dumps(record))
    code, doc, err = audit("--offline", "--db", str(db), *fleet)
    assert code == 0, err
    assert {f["id"] for f in doc["vulnerabilities"]["findings"]} == {
        "GHSA-lfvu-ln00-0001", "DSA-9999-1",
    }  # fmt: skip


def test_audit_outdated_pins_from_the_index(osv: str, fleet: tuple[str, ...]) -> None:
    code, doc, err = audit("--offline", "--index-url", f"{osv}/simple", *fleet)
    assert code == 0, err
    assert doc["outdated"]["status"] == "skipped"  # --offline
    code, doc, err = audit("--osv-url", osv, "--index-url", f"{osv}/simple", *fleet)
    assert code == 0, err
    assert doc["outdated"] == {
        "status": "ok",
        "packages": [{"node": "base", "tier": 0, "package": "lfvuln", "version": "1.0",
                      "newest": "1.1", "uploaded": "2026-03-01T10:00:00Z"}],
    }  # fmt: skip
