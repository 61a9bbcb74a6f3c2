"""Registries behind a forward proxy: HTTPS_PROXY (CONNECT tunnels to a TLS registry with a CA
made by the test), HTTP_PROXY (absolute-URI requests, token realm included), NO_PROXY, a
proxy that wants credentials and one that is not there. The proxy is our own
(``proxy_server.ForwardProxy``) on 127.0.0.1, in front of a real ``docker-registry``."""

from __future__ import annotations

import shutil
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.proxy_server import ForwardProxy
from tests.integration.registry_server import Registry, TokenGate, free_port
from tests.integration.test_registry_tls import PASSWORD, USER, TLSRegistry
from tests.integration.tiny import cli, cli_json, local_digests, tiny_project

pytestmark = pytest.mark.integration

PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy")


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSRegistry]:
    reg = TLSRegistry(tmp_path_factory.mktemp("tls-registry"))
    yield reg
    reg.stop()


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    server = ForwardProxy()
    yield server
    server.stop()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tls_registry: TLSRegistry) -> Path:
    """A private Docker config, certs.d trusting the test CA, and no proxy variables."""
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.setenv("LAYERFORGE_CERTS_DIR", str(tmp_path / "certs.d"))
    tls_registry.certs_d(tmp_path / "certs.d", tls_registry.ca[0])
    return tmp_path / "docker" / "config.json"


def test_push_and_pull_through_connect_proxy(
    tls_registry: TLSRegistry,
    proxy: ForwardProxy,
    env: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    host = tls_registry.host
    code, _, err = cli("login", host, "-u", USER, "--password-stdin", stdin=PASSWORD + "\n")
    assert code == 0, err
    cache = ("--cache-dir", str(tmp_path / "cache"))
    project = tiny_project(tmp_path / "p", f"{host}/acme")
    assert cli("lock", "-f", str(project), *cache)[0] == 0
    cli_json("build", "--no-verify", "--no-remote-cache", "-f", str(project), *cache)
    local = local_digests(project / ".layerforge")
    cli_json("push", "-f", str(project), *cache)
    pushed = proxy.tunnels[host]
    assert pushed >= 1, proxy.tunnels
    for node, digest in local.items():  # skopeo reads directly, over verified TLS
        assert tls_registry.skopeo_digest(f"acme/{node}:latest") == digest

    # a fresh store pulls every node from the remote cache, through the proxy too
    fresh = tmp_path / "fresh"
    shutil.copytree(project, fresh, ignore=shutil.ignore_patterns(".layerforge"))
    doc = cli_json("build", "--no-verify", "-f", str(fresh), *cache)
    assert {i["node"]: i["status"] for i in doc["images"]} == {"base": "remote", "svc": "remote"}
    assert local_digests(fresh / ".layerforge") == local
    assert proxy.tunnels[host] > pushed
    assert set(proxy.tunnels) == {host} and not proxy.requests


def test_no_proxy_bypasses(
    tls_registry: TLSRegistry,
    proxy: ForwardProxy,
    env: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("https_proxy", proxy.url)
    monkeypatch.setenv("no_proxy", "localhost,127.0.0.1")
    code, _, err = cli("login", tls_registry.host, "-u", USER, "-p", PASSWORD)
    assert code == 0, err
    assert not proxy.tunnels and not proxy.refused


def test_proxy_auth_required_is_a_clear_error(
    tls_registry: TLSRegistry, env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    guarded = ForwardProxy(credentials=("proxyuser", "p@ss:word"))
    try:
        monkeypatch.setenv("HTTPS_PROXY", guarded.url)
        code, _, err = cli("login", tls_registry.host, "-u", USER, "-p", PASSWORD)
        assert code == 3, err
        assert "Traceback" not in err
        assert f"through proxy {guarded.url}" in err and "407" in err, err
        assert "HTTPS_PROXY=http://user:password@host:port" in err
        assert guarded.refused[407] == 1  # a refusal is not retried
        assert not env.exists()
        creds = guarded.url.replace("http://", "http://proxyuser:p%40ss%3Aword@")
        monkeypatch.setenv("HTTPS_PROXY", creds)
        code, _, err = cli("login", tls_registry.host, "-u", USER, "-p", PASSWORD)
        assert code == 0, err
        assert guarded.tunnels[tls_registry.host] >= 1
        assert "p%40ss" not in err and "p@ss" not in err
    finally:
        guarded.stop()


def test_unreachable_proxy_is_named(
    tls_registry: TLSRegistry, env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("HTTPS_PROXY", nowhere)
    code, _, err = cli("login", tls_registry.host, "-u", USER, "-p", PASSWORD)
    assert code == 3, err
    assert f"unreachable through proxy {nowhere}" in err and "NO_PROXY" in err, err
    assert "Traceback" not in err


def test_plain_http_registry_and_token_realm_through_http_proxy(
    proxy: ForwardProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Bearer token gate over plain HTTP: its API and its token realm both go through
    HTTP_PROXY as absolute-URI requests."""
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    upstream = Registry(tmp_path / "upstream")
    gate = TokenGate(upstream.host, "bob", "builder")
    try:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        code, _, err = cli("login", gate.host, "-u", "bob", "--password-stdin", stdin="builder\n")
        assert code == 0, err
        project = tiny_project(tmp_path / "p", f"{gate.host}/viaproxy")
        cache = ("--cache-dir", str(tmp_path / "cache"))
        assert cli("lock", "-f", str(project), *cache)[0] == 0
        cli_json("build", "--push", "--no-verify", "-f", str(project), *cache)
        assert gate.issued, "no token was fetched"
        assert proxy.requests[gate.host] > len(gate.issued)  # API requests and tokens
        assert not proxy.tunnels and upstream.host not in proxy.requests
    finally:
        gate.stop()
        upstream.stop()


def test_tls_token_realm_through_an_authenticating_proxy(
    tls_registry: TLSRegistry, env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Bearer token gate on HTTPS (its realm too), behind a proxy that wants credentials:
    the API and the token requests both open CONNECT tunnels with Proxy-Authorization."""
    upstream = Registry(tmp_path / "upstream")
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(*tls_registry.server_cert)
    gate = TokenGate(upstream.host, "bob", "builder", tls=server)
    guarded = ForwardProxy(credentials=("proxyuser", "pw"))
    try:
        (tmp_path / "certs.d" / gate.host).mkdir(parents=True)
        shutil.copy(tls_registry.ca[0], tmp_path / "certs.d" / gate.host / "ca.crt")
        monkeypatch.setenv("HTTPS_PROXY", guarded.url.replace("//", "//proxyuser:pw@"))
        code, _, err = cli("login", gate.host, "-u", "bob", "--password-stdin", stdin="builder\n")
        assert code == 0, err
        project = tiny_project(tmp_path / "p", f"{gate.host}/bearer")
        cache = ("--cache-dir", str(tmp_path / "cache"))
        assert cli("lock", "-f", str(project), *cache)[0] == 0
        cli_json("build", "--push", "--no-verify", "-f", str(project), *cache)
        assert gate.issued, "no token was fetched"
        # each token request opens its own tunnel (urllib); the API reuses pooled ones
        assert guarded.tunnels[gate.host] > len(gate.issued) and not guarded.refused
        assert set(guarded.tunnels) == {gate.host}
    finally:
        guarded.stop()
        gate.stop()
        upstream.stop()
