"""Refresh the CA bundle baked with the runtime launcher from a certifi wheel.

    pip download --no-deps certifi==VERSION -d /tmp/certifi
    .venv/bin/python scripts/update_cacert.py /tmp/certifi/certifi-VERSION-py3-none-any.whl

Copies ``certifi/cacert.pem`` (checked against the wheel's RECORD) to
``src/layerforge/runtime/cacert.pem`` and prints the ``CA_BUNDLE`` record to paste into
``src/layerforge/runtime/__init__.py``. The bundle's bytes move the digests of every image
with runtime groups (and the content key of their nodes): say so in the release notes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MEMBER = "certifi/cacert.pem"


def main(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        data = zf.read(MEMBER)
        record = next(n for n in zf.namelist() if n.endswith(".dist-info/RECORD"))
        rows = [r.split(",") for r in zf.read(record).decode().splitlines()]
    digest = hashlib.sha256(data).digest()
    expected = "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    if [MEMBER, expected, str(len(data))] not in rows:
        sys.exit(f"{wheel}: {MEMBER} does not match the wheel's RECORD")
    (ROOT / "src/layerforge/runtime/cacert.pem").write_bytes(data)
    doc = {
        "wheel": wheel.name,
        "wheel_sha256": hashlib.sha256(wheel.read_bytes()).hexdigest(),
        "member": MEMBER,
        "sha256": digest.hex(),
    }
    print(f"CA_BUNDLE = {json.dumps(doc, indent=4)}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
