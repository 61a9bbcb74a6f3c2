"""Private CAs for registries: where ``certs.d/<host:port>/*.crt`` is looked for, and what a
client built from it speaks (HTTPS even on loopback, plain HTTP without an entry)."""

from __future__ import annotations

from pathlib import Path

import pytest

from layerforge.errors import UsageError
from layerforge.oci.config import RegistryConfig, default_cert_dirs, tls_context


def test_cert_dirs_start_with_the_environment_then_containers_and_docker(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path / "home"), "LAYERFORGE_CERTS_DIR": str(tmp_path / "mine")}
    assert default_cert_dirs(env) == (
        tmp_path / "mine",
        tmp_path / "home/.config/containers/certs.d",
        Path("/etc/containers/certs.d"),
        Path("/etc/docker/certs.d"),
    )
    xdg = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    assert default_cert_dirs(xdg)[0] == tmp_path / "xdg/containers/certs.d"


def test_a_certs_d_entry_means_https_even_on_loopback(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    (first / "127.0.0.1:5000").mkdir(parents=True)  # an entry with no CA file yet
    config = RegistryConfig(tmp_path / "config.json", (), (first, second))
    assert config.client("127.0.0.1:5000").scheme == "https"
    assert config.client("127.0.0.1:5001").scheme == "http"  # no entry: loopback stays HTTP
    insecure = RegistryConfig(tmp_path / "config.json", ("127.0.0.1:5000",), (first,))
    assert insecure.client("127.0.0.1:5000").scheme == "http"


def test_a_file_that_is_not_a_certificate_names_itself(tmp_path: Path) -> None:
    entry = tmp_path / "certs.d" / "127.0.0.1:5443"
    entry.mkdir(parents=True)
    (entry / "ca.crt").write_text("not a certificate\n")
    with pytest.raises(UsageError) as info:
        tls_context((tmp_path / "certs.d",), "127.0.0.1:5443")
    assert str(entry / "ca.crt") in str(info.value) and info.value.exit_code == 2
    assert tls_context((tmp_path / "certs.d",), "127.0.0.1:5444") is None
