"""The launcher on a real network: which CA bundle it trusts (and says so when verification
fails), the baked bundle itself, and what ``list --json`` says a group needs and whether it can
run here (free disk, a GPU)."""

from __future__ import annotations

import hashlib
import json
import ssl
import urllib.error
from pathlib import Path

import pytest

from layerforge import runtime
from layerforge.builder import runtime_layer
from layerforge.lock.inputs import key_doc
from layerforge.lock.lockfile import LockedGroup, LockedNode, Package
from layerforge.runtime import launcher


def paths(cafile: str | None, capath: str | None) -> ssl.DefaultVerifyPaths:
    """What ``ssl.get_default_verify_paths`` says (None: no such file or directory)."""
    return ssl.DefaultVerifyPaths(cafile, capath, "", "", "", "")  # type: ignore[arg-type]


NO_SYSTEM = paths(None, None)


def test_ca_order(tmp_path: Path) -> None:
    files = {}
    for name in ("ssl", "pip", "ours", "system", "baked"):
        files[name] = tmp_path / f"{name}.pem"
        files[name].write_text(f"{name}\n")
    system = paths(str(files["system"]), None)
    env = {
        "SSL_CERT_FILE": str(files["ssl"]),
        "PIP_CERT": str(files["pip"]),
        "LAYERFORGE_RUNTIME_CERT": str(files["ours"]),
    }
    baked = files["baked"]

    def pick(env: dict[str, str], paths: ssl.DefaultVerifyPaths = system) -> tuple[Path, str]:
        ca = launcher.choose_ca(env, paths, baked)
        return ca.path, ca.source

    assert pick(env) == (files["ssl"], "SSL_CERT_FILE")
    del env["SSL_CERT_FILE"]
    assert pick(env) == (files["pip"], "PIP_CERT")
    del env["PIP_CERT"]
    assert pick(env) == (files["ours"], "LAYERFORGE_RUNTIME_CERT")
    assert pick({}) == (files["system"], "the system CA store")
    files["system"].write_text("")  # an empty system bundle is no bundle
    assert pick({}) == (baked, "the CA bundle baked in the image")
    assert pick({}, NO_SYSTEM) == (baked, "the CA bundle baked in the image")
    certs = tmp_path / "certs"
    certs.mkdir()
    assert pick({}, paths(None, str(certs))) == (
        baked,
        "the CA bundle baked in the image",
    )
    (certs / "abcd1234.0").write_text("x")
    assert pick({}, paths(None, str(certs))) == (
        certs,
        "the system CA store",
    )
    # the launcher's own settings carry the choice
    settings = launcher.Settings.from_env({"PIP_CERT": str(files["pip"])})
    assert settings.ca is not None and settings.ca.path == files["pip"]


def test_a_verify_failure_names_the_ca_file_used(tmp_path: Path) -> None:
    exc = urllib.error.URLError(ssl.SSLCertVerificationError("self-signed certificate"))
    baked = launcher.choose_ca({}, NO_SYSTEM)
    advice = launcher._advice(exc, "(none)", baked)
    assert str(launcher.BAKED_CA) in advice and "baked in the image" in advice
    assert "proxy" not in advice
    assert "SSL_CERT_FILE" in advice  # the way to trust another CA
    mine = launcher.choose_ca({"LAYERFORGE_RUNTIME_CERT": str(tmp_path / "ca.pem")}, NO_SYSTEM)
    assert f"{tmp_path / 'ca.pem'} (LAYERFORGE_RUNTIME_CERT)" in launcher._advice(exc, "", mine)


def test_a_ca_file_that_is_not_there_is_a_clear_fetch_error(tmp_path: Path) -> None:
    ca = launcher.choose_ca({"SSL_CERT_FILE": str(tmp_path / "missing.pem")}, NO_SYSTEM)
    with pytest.raises(launcher.FetchError, match=r"SSL_CERT_FILE=.*missing\.pem"):
        ca.context()


def test_the_baked_bundle_is_certifis_and_is_in_the_runtime_layer() -> None:
    data = launcher.BAKED_CA.read_bytes()
    assert hashlib.sha256(data).hexdigest() == runtime.CA_BUNDLE["sha256"]
    assert data.count(b"-----BEGIN CERTIFICATE-----") > 100
    ctx = ssl.create_default_context(cafile=str(launcher.BAKED_CA))
    assert len(ctx.get_ca_certs()) > 100
    pkg = Package("six", "1.0", "six-1.0-py3-none-any.whl", "u", "a" * 64, 1)
    locked = LockedNode("sha256:0", runtime=(LockedGroup("extra", "sha256:1", (pkg,)),))
    files = {e.path: e.data for e in runtime_layer.runtime_entries(locked, "3.11")}
    baked = files[f"opt/venv/lib/python3.11/site-packages/{runtime_layer.MODULE}/cacert.pem"]
    assert baked == data
    # the launcher's files (CA bundle included) feed the content key of a node with groups
    doc = key_doc(locked)
    assert doc["runtime_support"] == runtime.support_digest()
    assert key_doc(LockedNode("sha256:0")) == {}
    assert json.dumps(doc)  # JSON-able
