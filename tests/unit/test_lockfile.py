from __future__ import annotations

from pathlib import Path

import pytest

from layerforge.errors import LockError
from layerforge.lock import lockfile
from layerforge.lock.lockfile import Lock, LockedNode, Package, SourcePin
from tests.conftest import REPO


def sample() -> Lock:
    pkgs = (
        Package(
            "six", "1.17.0", "six-1.17.0-py2.py3-none-any.whl", "https://x/six.whl", "ab" * 32, 11
        ),
        Package("idna", "3.20", "idna-3.20-py3-none-any.whl", "https://x/idna.whl", "cd" * 32, 22),
    )
    return Lock(
        "3.11",
        "x86_64-manylinux_2_28",
        {
            "svc.a": LockedNode("sha256:" + "1" * 64),
            "cpu": LockedNode("sha256:" + "0" * 64, pkgs, SourcePin("debootstrap", "bookworm")),
        },
    )


def test_round_trip_is_exact() -> None:
    lock = sample()
    text = lockfile.dumps(lock)
    again = lockfile.loads(text)
    assert lockfile.dumps(again) == text
    assert again.nodes["cpu"].by_name()["six"].size == 11


def test_output_is_sorted_and_timestamp_free() -> None:
    text = lockfile.dumps(sample())
    assert text.index("[nodes.cpu]") < text.index('[nodes."svc.a"]')
    assert text.index('name = "idna"') < text.index('name = "six"')
    assert "time" not in text and "created" not in text


def test_write_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "layerforge.lock"
    assert lockfile.write(path, sample()) is True
    assert lockfile.write(path, sample()) is False


def test_missing_lock_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(LockError, match="layerforge lock"):
        lockfile.read(tmp_path / "layerforge.lock")


def test_bad_version_rejected() -> None:
    with pytest.raises(LockError, match="unsupported lock version"):
        lockfile.loads('version = 99\npython = "3.11"\nplatform = "x"\n')


def test_an_os_source_pin_is_typed_and_keeps_its_text() -> None:
    """The pin reads into a SourcePin (no searching (key, value) tuples for "identity") and
    writes back the same inline table: kind, spec, comma-joined packages, identity."""
    text = (REPO / "examples/fleet/layerforge.lock").read_text()
    lock = lockfile.loads(text)
    pin = lock.nodes["cpu"].source
    assert pin is not None and pin.kind == "debootstrap" and pin.spec == "bookworm"
    assert lock.nodes["cpu"].os_identity == pin.identity
    assert (pin.identity or "").startswith("sha256:")
    assert lock.nodes["ml"].source is None and lock.nodes["ml"].os_identity is None
    assert lockfile.dumps(lock) == text
    extra = SourcePin("debootstrap", "bookworm", ("curl", "git"), "sha256:" + "1" * 64)
    again = lockfile.loads(lockfile.dumps(Lock("3.11", "x", {"cpu": LockedNode("i", (), extra)})))
    assert again.nodes["cpu"].source == extra
