"""Item 3 of issue 16: the audit's pure parts: Debian version order, OSV records evaluated
offline, the import scan."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from layerforge.audit.imports import imported_names
from layerforge.audit.osv import OsvDb, Query, affected_fixes
from layerforge.audit.versions import debian_compare, pypi_compare

DEBIAN = [
    ("1.0", "1.0", 0),
    ("1.0~rc1", "1.0", -1),
    ("1.0", "1.0+b1", -1),
    ("1:0.9", "2.0", 1),
    ("3.0.20-1~deb12u2", "3.0.22-1~deb12u2", -1),
    ("5.2.15-2+b13", "5.2.15-2", 1),
    ("2.36-9+deb12u10", "2.36-9+deb12u9", 1),
    ("1.0a", "1.0", 1),
    ("1.0-1", "1.0-1~bpo1", 1),
    ("7.88.1-10+deb12u12", "7.88.1-10+deb12u5", 1),
]


@pytest.mark.parametrize(("a", "b", "expected"), DEBIAN)
def test_debian_version_order(a: str, b: str, expected: int) -> None:
    assert debian_compare(a, b) == expected
    assert debian_compare(b, a) == -expected
    for op, holds in (("lt", expected < 0), ("eq", expected == 0), ("gt", expected > 0)):
        rc = subprocess.run(["dpkg", "--compare-versions", a, op, b], check=False).returncode
        assert (rc == 0) == holds, (a, op, b)


def test_pypi_version_order() -> None:
    assert pypi_compare("1.10", "1.9") == 1
    assert pypi_compare("2.0rc1", "2.0") == -1


def record(vid: str, ecosystem: str, name: str, events: list[dict[str, str]]) -> dict[str, object]:
    return {
        "schema_version": "1.6.0",
        "id": vid,
        "modified": "2026-01-01T00:00:00Z",
        "summary": f"{name} is vulnerable",
        "affected": [
            {
                "package": {"ecosystem": ecosystem, "name": name},
                "ranges": [{"type": "ECOSYSTEM", "events": events}],
                "database_specific": {"severity": "HIGH"},
            }
        ],
    }


def test_osv_range_evaluation(tmp_path: Path) -> None:
    import json

    (tmp_path / "PyPI").mkdir()
    (tmp_path / "Debian").mkdir()
    lf = record("PYSEC-1", "PyPI", "lfvuln", [{"introduced": "0"}, {"fixed": "1.1"}])
    ssl = record(
        "DSA-1", "Debian:12", "openssl", [{"introduced": "0"}, {"fixed": "3.0.22-1~deb12u2"}]
    )
    (tmp_path / "PyPI/PYSEC-1.json").write_text(json.dumps(lf))
    (tmp_path / "Debian/DSA-1.json").write_text(json.dumps(ssl))
    db = OsvDb(tmp_path)
    found = db.query([
        Query("PyPI", "lfvuln", "1.0"),
        Query("PyPI", "lfvuln", "1.1"),
        Query("Debian:12", "openssl", "3.0.20-1~deb12u2"),
        Query("Debian:12", "openssl", "3.0.22-1~deb12u2"),
    ])  # fmt: skip
    assert [[v["id"] for v in hits] for hits in found] == [["PYSEC-1"], [], ["DSA-1"], []]
    assert affected_fixes(lf, Query("PyPI", "lfvuln", "1.0")) == ("1.1",)


def test_import_scan(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg/a.py").write_text(
        "import os, lfused.sub\nfrom yaml import x\nfrom . import b\n"
    )
    (tmp_path / "pkg/b.py").write_text("def f():\n    import numpy as np\n")
    (tmp_path / "pkg/broken.py").write_text("def (:\n")
    assert imported_names(tmp_path) == {"os", "lfused", "yaml", "numpy"}
