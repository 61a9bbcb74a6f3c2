"""fsutil: the canonical-JSON digest every content key goes through, and atomic writes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from layerforge.fsutil import atomic_write, digest_json
from layerforge.oci.layout import canonical_json


def test_digest_json_pins_the_key_encoding() -> None:
    """Compact separators, sorted keys, ASCII escapes: the bytes behind every content key
    (a change here would rebuild every image of every user)."""
    value = {"b": [1, "x"], "a": "é/ü"}
    raw = b'{"a":"\\u00e9/\\u00fc","b":[1,"x"]}'
    assert digest_json(value) == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert digest_json({"k": "ascii"}) == "sha256:" + hashlib.sha256(b'{"k":"ascii"}').hexdigest()


def test_oci_documents_are_not_ascii_escaped() -> None:
    """Manifests and configs keep UTF-8 as is: a different encoding from the key one."""
    assert canonical_json({"a": "é"}) == '{"a":"é"}'.encode()


def test_atomic_write_replaces_whole_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "file.json"
    atomic_write(target, b"one")
    atomic_write(target, b"two")
    assert target.read_bytes() == b"two"
    assert os.listdir(target.parent) == ["file.json"]
