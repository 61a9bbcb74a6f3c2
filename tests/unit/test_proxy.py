"""NO_PROXY/HTTPS_PROXY rules (curl's): which registry URL goes through which proxy."""

from __future__ import annotations

import pytest

from layerforge.errors import UsageError
from layerforge.oci.config import RegistryConfig
from layerforge.oci.proxy import ProxyConfig, ProxyURL, bypassed

PROXY = {"HTTPS_PROXY": "http://127.0.0.1:3128", "HTTP_PROXY": "127.0.0.1:3129"}


@pytest.mark.parametrize(
    ("entries", "host", "port", "expected"),
    [
        (("*",), "registry.corp", 443, True),
        ((".corp",), "registry.corp", 443, True),
        (("corp",), "registry.corp", 443, True),
        (("corp",), "corp", 443, True),
        (("corp",), "notcorp", 443, False),
        ((".corp",), "corp", 443, True),
        (("10.0.0.0/8",), "10.1.2.3", 443, True),
        (("10.0.0.0/8",), "11.1.2.3", 443, False),
        (("127.0.0.1",), "127.0.0.1", 5000, True),
        (("127.0.0.1:5000",), "127.0.0.1", 5000, True),
        (("127.0.0.1:5000",), "127.0.0.1", 5001, False),
        (("host:5000",), "host", 5000, True),
        (("host:5000",), "host", 443, False),
        (("::1",), "::1", 443, True),
        (("[::1]:5000",), "::1", 5000, True),
        ((), "127.0.0.1", 5000, False),  # loopback is not implied, as curl
        (("localhost",), "127.0.0.1", 5000, False),  # names are not resolved
    ],
)
def test_no_proxy_matching(entries: tuple[str, ...], host: str, port: int, expected: bool) -> None:
    assert bypassed(entries, host, port) is expected


def test_lowercase_variables_win_and_schemes_pick_their_proxy() -> None:
    env = {**PROXY, "https_proxy": "http://u%40x:p%3Aw@127.0.0.1:8080", "NO_PROXY": "a, .b"}
    config = ProxyConfig.from_env(env)
    https = config.for_url("https", "registry.example", 443)
    assert https is not None
    assert (https.host, https.port) == ("127.0.0.1", 8080)
    assert https.headers == {"Proxy-Authorization": "Basic dUB4OnA6dw=="}  # u@x:p:w
    assert https.display == "http://127.0.0.1:8080"
    plain = config.for_netloc("http", "127.0.0.1:5000")
    assert plain == ProxyURL("127.0.0.1", 3129)
    assert config.for_url("https", "x.b", 443) is None
    assert ProxyConfig.from_env({**PROXY, "no_proxy": "*", "NO_PROXY": ""}).no_proxy == ("*",)
    assert ProxyConfig.from_env({}) == ProxyConfig()


def test_bad_proxy_url_is_a_usage_error_when_used() -> None:
    config = ProxyConfig.from_env({"HTTPS_PROXY": "socks5://127.0.0.1:1080"})
    assert config.for_url("http", "127.0.0.1", 5000) is None  # not needed: not refused
    with pytest.raises(UsageError, match="HTTPS_PROXY"):
        config.for_url("https", "127.0.0.1", 5000)


def test_registry_config_reads_proxies_from_its_mapping() -> None:
    config = RegistryConfig.from_env({**PROXY, "HOME": "/nonexistent"})
    assert config.proxy.for_netloc("https", "127.0.0.1:5000") == ProxyURL("127.0.0.1", 3128)
    client = config.client("127.0.0.1:5000")
    assert client.proxy == config.proxy
