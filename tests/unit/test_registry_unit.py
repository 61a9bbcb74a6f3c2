"""References, challenges, config.json credentials, and the client's retry/redirect rules
(against tiny HTTP servers started here: nothing is mocked)."""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from layerforge.errors import RegistryError
from layerforge.oci.auth import (
    Credential,
    default_config_path,
    lookup,
    parse_challenge,
    read_config,
    save_login,
)
from layerforge.oci.reference import Reference, is_loopback, parse, split_namespace
from layerforge.oci.registry import Client

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("python", Reference("docker.io", "library/python", "latest")),
        ("python:3.12-slim", Reference("docker.io", "library/python", "3.12-slim")),
        ("acme/tool:1", Reference("docker.io", "acme/tool", "1")),
        ("ghcr.io/org/img:v1", Reference("ghcr.io", "org/img", "v1")),
        ("localhost/img", Reference("localhost", "img", "latest")),
        ("127.0.0.1:5000/a/b:t", Reference("127.0.0.1:5000", "a/b", "t")),
        (f"reg.example/img@{DIGEST}", Reference("reg.example", "img", None, DIGEST)),
        (f"reg.example:443/img:t@{DIGEST}", Reference("reg.example:443", "img", "t", DIGEST)),
    ],
)
def test_references_follow_docker_defaults(text: str, expected: Reference) -> None:
    assert parse(text) == expected


def test_reference_endpoint_and_text() -> None:
    ref = parse("python:3.12")
    assert ref.endpoint == "registry-1.docker.io"
    assert ref.reference == "3.12"
    assert str(ref) == "docker.io/library/python:3.12"
    assert parse(f"a.b/c@{DIGEST}").reference == DIGEST


@pytest.mark.parametrize(
    "text", ["Python:3", "img@sha256:abc", "a.b/c:bad tag", "a.b/", "a.b/x//y", "a.b/c:-t"]
)
def test_bad_references_exit_3(text: str) -> None:
    with pytest.raises(RegistryError) as info:
        parse(text)
    assert info.value.exit_code == 3
    assert "bad image reference" in str(info.value)


def test_loopback_and_namespaces() -> None:
    assert is_loopback("127.0.0.1:5000") and is_loopback("localhost") and is_loopback("[::1]:80")
    assert not is_loopback("10.0.0.1:5000") and not is_loopback("reg.example")
    assert split_namespace("reg.example:5000/acme/ml") == ("reg.example:5000", "acme/ml")
    assert split_namespace("https://reg.example/") == ("reg.example", "")
    assert split_namespace("acme") == ("docker.io", "acme")


def test_challenges_are_parsed() -> None:
    c = parse_challenge(
        'Bearer realm="https://auth.example/token",service="reg.example",'
        'scope="repository:a/b:pull,push"'
    )
    assert c.scheme == "bearer"
    assert c.get("realm") == "https://auth.example/token"
    assert c.get("scope") == "repository:a/b:pull,push"
    assert parse_challenge('Basic realm="x y"').get("realm") == "x y"
    assert parse_challenge("basic").scheme == "basic"
    quoted = parse_challenge(r'Bearer realm="a\"b", error=invalid_token')
    assert quoted.get("realm") == 'a"b' and quoted.get("error") == "invalid_token"


def test_config_json_credentials(tmp_path: Path) -> None:
    auth = base64.b64encode(b"alice:s3cret:x").decode()
    doc = {
        "auths": {
            "https://reg.example/v1/": {"auth": auth},
            "tok.example": {"identitytoken": "refresh-me"},
            "https://index.docker.io/v1/": {"auth": base64.b64encode(b"hub:pw").decode()},
            "empty.example": {},
        }
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(doc))
    config = read_config(path)
    assert lookup(config, "reg.example") == Credential("alice", "s3cret:x")
    assert lookup(config, "tok.example") == Credential(identity_token="refresh-me")
    assert lookup(config, "docker.io") == Credential("hub", "pw")
    assert lookup(config, "empty.example") is None
    assert lookup(config, "other.example") is None
    assert default_config_path({"DOCKER_CONFIG": str(tmp_path)}) == path
    assert default_config_path({"HOME": "/h"}) == Path("/h/.docker/config.json")


def test_missing_credential_helper_is_no_credential(tmp_path: Path) -> None:
    config = {"credHelpers": {"reg.example": "layerforge-test-nonexistent"}}
    assert lookup(config, "reg.example") is None


def test_credential_helpers_are_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hand-written docker-credential-* helper on PATH (the protocol: server on stdin)."""
    helper = tmp_path / "bin" / "docker-credential-lftest"
    helper.parent.mkdir()
    helper.write_text(
        "#!/bin/sh\nread server\n"
        'if [ "$server" = "helper.example" ]; then\n'
        '  echo \'{"Username": "carol", "Secret": "from-helper"}\'\n'
        'elif [ "$server" = "tok.example" ]; then\n'
        '  echo \'{"Username": "<token>", "Secret": "refresh"}\'\n'
        "else exit 1; fi\n"
    )
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{helper.parent}:{os.environ['PATH']}")
    config = {"credHelpers": {"helper.example": "lftest", "tok.example": "lftest"}}
    assert lookup(config, "helper.example") == Credential("carol", "from-helper")
    assert lookup(config, "tok.example") == Credential(identity_token="refresh")
    assert lookup({"credsStore": "lftest"}, "other.example") is None


def test_bad_config_json_is_a_registry_error(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text("{nope")
    with pytest.raises(RegistryError, match="not valid JSON"):
        read_config(path)
    path.write_text(json.dumps({"auths": {"r.example": {"auth": "!!!"}}}))
    with pytest.raises(RegistryError, match=r"login r\.example"):
        lookup(read_config(path), "r.example")


def test_save_login_keeps_other_entries(tmp_path: Path) -> None:
    path = tmp_path / "d" / "config.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"auths": {"https://r.example/v1/": {"auth": "x"}}, "k": 1}))
    save_login(path, "r.example", Credential("bob", "pw"))
    save_login(path, "s.example:5000", Credential("eve", "pw2"))
    doc = json.loads(path.read_text())
    assert doc["k"] == 1
    assert set(doc["auths"]) == {"r.example", "s.example:5000"}
    assert lookup(doc, "r.example") == Credential("bob", "pw")
    assert path.stat().st_mode & 0o777 == 0o600


# -- the client against tiny servers ---------------------------------------------------------


class _Script:
    """What a tiny server answers, and what it saw."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []  # (port, path, Authorization)
        self.fail_first = 0


def _serve(script: _Script, answer: Any) -> Iterator[ThreadingHTTPServer]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            port = str(getattr(self.server, "server_port", ""))
            script.seen.append((port, self.path, self.headers.get("Authorization", "")))
            status, headers, body = answer(self, script)
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_retries_429_and_5xx_then_succeeds() -> None:
    script = _Script()
    script.fail_first = 3
    sleeps: list[float] = []

    def answer(h: Any, s: _Script) -> tuple[int, dict[str, str], bytes]:
        if s.fail_first:
            s.fail_first -= 1
            return (429, {"Retry-After": "2"}, b"") if s.fail_first % 2 else (503, {}, b"")
        return 200, {}, b"ok"

    for server in _serve(script, answer):
        with Client(f"127.0.0.1:{server.server_address[1]}", sleep=sleeps.append) as client:
            resp = client.request("GET", "/v2/")
        assert resp.status == 200 and resp.data == b"ok"
        assert len(script.seen) == 4
        assert 2.0 in sleeps and len(sleeps) == 3


def test_redirect_to_another_host_drops_credentials() -> None:
    script = _Script()

    def blobs(h: Any, s: _Script) -> tuple[int, dict[str, str], bytes]:
        return 200, {}, b"blob bytes"

    target: list[str] = []

    def registry(h: Any, s: _Script) -> tuple[int, dict[str, str], bytes]:
        if h.headers.get("Authorization") is None:
            return 401, {"WWW-Authenticate": 'Basic realm="r"'}, b""
        return 307, {"Location": target[0]}, b""

    for other in _serve(script, blobs):
        target.append(f"http://127.0.0.1:{other.server_address[1]}/storage/x")

        for server in _serve(script, registry):
            port = server.server_address[1]
            with Client(f"127.0.0.1:{port}", Credential("u", "p")) as client:
                resp = client.request("GET", "/v2/r/blobs/sha256:x")
            assert resp.status == 200 and resp.data == b"blob bytes"
            by_port = {p: a for p, _, a in script.seen}
            assert by_port[str(port)].startswith("Basic ")
            assert by_port[str(other.server_address[1])] == ""


def test_unreachable_registry_is_exit_3() -> None:
    from tests.integration.registry_server import free_port

    client = Client(f"127.0.0.1:{free_port()}", sleep=lambda s: None)
    with pytest.raises(RegistryError) as info:
        client.ping()
    assert info.value.exit_code == 3
    assert "unreachable" in str(info.value)


def test_a_blob_that_does_not_match_its_digest_is_not_stored(tmp_path: Path) -> None:
    from layerforge.events import NullReporter
    from layerforge.fsutil import sha256_digest
    from layerforge.oci.layout import Descriptor, Store
    from layerforge.oci.pull import pull_blob

    good = b"the real layer"

    def tampered(h: Any, s: _Script) -> tuple[int, dict[str, str], bytes]:
        return 200, {}, b"something else"

    store = Store.open(tmp_path / "store")
    desc = Descriptor("application/octet-stream", sha256_digest(good), len(good))
    for server in _serve(_Script(), tampered):
        host = f"127.0.0.1:{server.server_address[1]}"
        with Client(host) as client, pytest.raises(RegistryError) as info:
            pull_blob(client, parse(f"{host}/repo:t"), store, desc, NullReporter())
    assert info.value.exit_code == 3 and "does not match its digest" in str(info.value)
    assert not store.has_blob(desc.digest)
    assert list((tmp_path / "store/blobs/sha256").iterdir()) == []


def test_push_without_a_registry_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from layerforge.cli import main

    (tmp_path / "layerforge.toml").write_text(
        '[project]\nname = "x"\n[bases.cpu]\nfrom = { debootstrap = "bookworm" }\n'
    )
    assert main(["push", "-f", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "project.registry is not set" in err and "registry = " in err


def test_login_with_a_bad_password_stores_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from layerforge.cli import main

    def basic(h: Any, s: _Script) -> tuple[int, dict[str, str], bytes]:
        good = Credential("u", "right").basic_header()
        if h.headers.get("Authorization") == good:
            return 200, {}, b"{}"
        return 401, {"WWW-Authenticate": 'Basic realm="r"'}, b""

    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    for server in _serve(_Script(), basic):
        host = f"127.0.0.1:{server.server_address[1]}"
        assert main(["login", host, "-u", "u", "-p", "wrong"]) == 3
        assert f"registry {host} rejected" in capsys.readouterr().err
        assert not (tmp_path / "config.json").exists()
        assert main(["login", host, "-u", "u", "-p", "right"]) == 0
        assert lookup(read_config(tmp_path / "config.json"), host) == Credential("u", "right")
