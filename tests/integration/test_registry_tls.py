"""A registry over HTTPS with a CA made here: ``docker-registry`` with ``http.tls`` and htpasswd
auth on 127.0.0.1, trusted through a ``certs.d/<host:port>/ca.crt`` directory (the Docker and
containers convention) named by ``LAYERFORGE_CERTS_DIR``. login with ``--password-stdin``,
push, ``build --push`` on a fresh store (remote cache hits), a registry reference as OS source,
and skopeo reading what we pushed; an untrusted certificate and a wrong password fail clearly."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from layerforge.fsutil import sha256_digest
from layerforge.oci.layout import Store
from tests.conftest import require_tools
from tests.integration.registry_server import Registry, TokenGate, free_port
from tests.integration.tiny import cli, cli_json, local_digests, tiny_project
from tests.integration.tools import run

pytestmark = pytest.mark.integration

USER, PASSWORD = "ci", "tls-s3cret"


def make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed CA (certificate, key)."""
    directory.mkdir(parents=True, exist_ok=True)
    crt, key = directory / f"{name}.crt", directory / f"{name}.key"
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(crt), "-days", "2",
         "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"])  # fmt: skip
    return crt, key


def make_server_cert(directory: Path, ca: tuple[Path, Path]) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (IP SAN) signed by ``ca``."""
    crt, key, csr = directory / "server.crt", directory / "server.key", directory / "server.csr"
    ext = directory / "server.ext"
    ext.write_text(
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
    )
    run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1"])  # fmt: skip
    run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
         "-CAcreateserial", "-out", str(crt), "-days", "2", "-extfile", str(ext)])  # fmt: skip
    return crt, key


class TLSRegistry:
    """``docker-registry serve`` over HTTPS with htpasswd Basic auth."""

    def __init__(self, root: Path) -> None:
        require_tools("docker-registry", "htpasswd", "openssl", "skopeo")
        self.root = root
        self.ca = make_ca(root / "ca", "layerforge-test-ca")
        self.other_ca = make_ca(root / "other", "some-other-ca")
        cert, key = make_server_cert(root / "ca", self.ca)
        self.server_cert = (cert, key)
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        (root / "htpasswd").write_text(run(["htpasswd", "-Bbn", USER, PASSWORD]).strip() + "\n")
        (root / "config.yml").write_text(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n"
            f"http:\n  addr: {self.host}\n  tls:\n    certificate: {cert}\n    key: {key}\n"
            f"auth:\n  htpasswd:\n    realm: test\n    path: {root / 'htpasswd'}\n"
        )
        self.log = (root / "registry.log").open("wb")
        self.proc = subprocess.Popen(
            ["docker-registry", "serve", str(root / "config.yml")],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self._wait()

    def _wait(self) -> None:
        context = ssl.create_default_context(cafile=str(self.ca[0]))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with contextlib.closing(
                    context.wrap_socket(
                        socket.create_connection(("127.0.0.1", self.port), 2),
                        server_hostname="127.0.0.1",
                    )
                ):
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"registry did not start: {(self.root / 'registry.log').read_text()}")

    def certs_d(self, directory: Path, ca: Path) -> Path:
        """``directory/<host:port>/ca.crt`` holding ``ca``; returns ``directory``."""
        (directory / self.host).mkdir(parents=True, exist_ok=True)
        shutil.copy(ca, directory / self.host / "ca.crt")
        return directory

    def skopeo_digest(self, ref: str) -> str:
        """The manifest digest of ``ref`` as skopeo reads it over verified TLS."""
        certs = self.certs_d(self.root / "skopeo.d", self.ca[0]) / self.host  # just ca.crt
        out = subprocess.run(
            ["skopeo", "inspect", "--raw", "--cert-dir", str(certs),
             "--creds", f"{USER}:{PASSWORD}", f"docker://{self.host}/{ref}"],
            capture_output=True, timeout=120, check=False,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr.decode()
        return sha256_digest(out.stdout)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)
        self.log.close()


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSRegistry]:
    reg = TLSRegistry(tmp_path_factory.mktemp("tls-registry"))
    yield reg
    reg.stop()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tls_registry: TLSRegistry) -> Path:
    """A private Docker config.json, and certs.d trusting the test CA; returns config.json."""
    docker = tmp_path / "docker"
    docker.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(docker))
    monkeypatch.setenv("LAYERFORGE_CERTS_DIR", str(tmp_path / "certs.d"))
    tls_registry.certs_d(tmp_path / "certs.d", tls_registry.ca[0])
    return docker / "config.json"


def test_login_push_remote_cache_and_pull_over_tls(
    tls_registry: TLSRegistry, env: Path, tmp_path: Path
) -> None:
    host = tls_registry.host
    code, _, err = cli("login", host, "-u", USER, "--password-stdin", stdin=PASSWORD + "\n")
    assert code == 0, err
    assert host in json.loads(env.read_text())["auths"]

    cache = ("--cache-dir", str(tmp_path / "cache"))
    project = tiny_project(tmp_path / "p", f"{host}/acme")
    assert cli("lock", "-f", str(project), *cache)[0] == 0
    cli_json("build", "--no-verify", "-f", str(project), *cache)
    local = local_digests(project / ".layerforge")
    pushed = cli_json("push", "-f", str(project), *cache)
    assert {i["repository"]: i["digest"] for i in pushed["images"]} == {
        f"acme/{node}": digest for node, digest in local.items()
    }
    for node, digest in local.items():
        assert tls_registry.skopeo_digest(f"acme/{node}:latest") == digest

    # a fresh store: every node is a remote-cache hit, and pushing it again uploads nothing
    fresh = tmp_path / "fresh"
    shutil.copytree(project, fresh, ignore=shutil.ignore_patterns(".layerforge"))
    doc = cli_json("build", "--push", "--no-verify", "-f", str(fresh), *cache)
    assert {i["node"]: i["status"] for i in doc["images"]} == {"base": "remote", "svc": "remote"}
    assert local_digests(fresh / ".layerforge") == local
    assert all(i["uploaded_bytes"] == 0 for i in doc["push"]["images"])

    # a registry reference as OS source: lock pins the pushed digest, build pulls the layers
    derived = tiny_project(tmp_path / "derived", f"{host}/derived", f"{host}/acme/svc:latest")
    assert cli("lock", "-f", str(derived), *cache)[0] == 0
    assert local["svc"] in (derived / "layerforge.lock").read_text()
    cli_json("build", "--no-verify", "-f", str(derived), *cache)
    theirs = Store.open(project / ".layerforge", create=False)
    ours = Store.open(derived / ".layerforge", create=False)
    svc_layers = theirs.read_json(local["svc"])["layers"]
    ours_desc = ours.resolve("base:latest")
    assert ours_desc is not None
    base_layers = ours.read_json(ours_desc.digest)["layers"]
    assert [x["digest"] for x in base_layers[: len(svc_layers)]] == [
        x["digest"] for x in svc_layers
    ]
    assert all(ours.has_blob(x["digest"]) for x in base_layers)


def test_untrusted_certificate_is_a_clear_error(
    tls_registry: TLSRegistry, env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = tls_registry.certs_d(tmp_path / "wrong.d", tls_registry.other_ca[0])
    monkeypatch.setenv("LAYERFORGE_CERTS_DIR", str(wrong))
    code, _, err = cli("login", tls_registry.host, "-u", USER, "-p", PASSWORD)
    assert code == 3, err
    assert "Traceback" not in err
    assert tls_registry.host in err and "certificate" in err and "not trusted" in err
    assert "ca.crt" in err  # the hint says where the CA goes
    assert not env.exists()


def test_loopback_tls_registry_without_a_ca_entry_is_a_clear_error(
    tls_registry: TLSRegistry, env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAYERFORGE_CERTS_DIR", str(tmp_path / "empty.d"))
    code, _, err = cli("login", tls_registry.host, "-u", USER, "-p", PASSWORD)
    assert code == 3, err
    assert "Traceback" not in err
    assert "HTTPS" in err and f"{tls_registry.host}/ca.crt" in err
    assert not env.exists()


def test_wrong_password_and_no_login_are_clear_auth_errors(
    tls_registry: TLSRegistry, env: Path, tmp_path: Path
) -> None:
    host = tls_registry.host
    code, _, err = cli("login", host, "-u", USER, "--password-stdin", stdin="wrong\n")
    assert code == 3 and "rejected the credentials" in err and repr(USER) in err, err
    assert not env.exists()
    project = tiny_project(tmp_path / "p", f"{host}/acme")
    cache = ("--cache-dir", str(tmp_path / "cache"))
    assert cli("lock", "-f", str(project), *cache)[0] == 0
    cli_json("build", "--no-verify", "--no-remote-cache", "-f", str(project), *cache)
    code, _, err = cli("push", "-f", str(project), *cache)
    assert code == 3 and "requires authentication" in err and f"layerforge login {host}" in err
    assert "Traceback" not in err


def test_bearer_token_service_over_tls(
    tls_registry: TLSRegistry, env: Path, tmp_path: Path
) -> None:
    """A token gate on HTTPS (its realm too) in front of a registry: the private CA is
    trusted for the token service as well as for the API."""
    upstream = Registry(tmp_path / "upstream")
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(*tls_registry.server_cert)
    gate = TokenGate(upstream.host, "bob", "builder", tls=server)
    try:
        (tmp_path / "certs.d" / gate.host).mkdir(parents=True)
        shutil.copy(tls_registry.ca[0], tmp_path / "certs.d" / gate.host / "ca.crt")
        code, _, err = cli("login", gate.host, "-u", "bob", "--password-stdin", stdin="builder\n")
        assert code == 0, err
        project = tiny_project(tmp_path / "p", f"{gate.host}/bearer")
        cache = ("--cache-dir", str(tmp_path / "cache"))
        assert cli("lock", "-f", str(project), *cache)[0] == 0
        cli_json("build", "--push", "--no-verify", "-f", str(project), *cache)
        assert gate.issued, "no token was fetched"
        local = local_digests(project / ".layerforge")
        out = run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                   f"docker://{upstream.host}/bearer/svc:latest"])  # fmt: skip
        assert sha256_digest(out.encode()) == local["svc"]
    finally:
        gate.stop()
        upstream.stop()
