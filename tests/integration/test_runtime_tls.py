"""The baked launcher downloads a runtime group over HTTPS in an image without a CA store.

The runtime layer's files (launcher, cacert.pem, pins) are laid out as an image carries them
and the launcher runs in a bubblewrap view of this host whose ``/etc/ssl`` is empty (no
``ca-certificates``). The wheels are served over TLS on 127.0.0.1 with a certificate signed by
a CA made here: the baked bundle alone does not trust it and the error names that bundle;
``SSL_CERT_FILE`` (or ``LAYERFORGE_RUNTIME_CERT``) naming the test CA works; ``https_proxy``
sends the download through a CONNECT proxy, and ``no_proxy`` goes around it.
"""

from __future__ import annotations

import functools
import http.server
import select
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from layerforge.builder import runtime_layer
from layerforge.lock.lockfile import LockedGroup, LockedNode, Package
from tests.conftest import require_tools
from tests.integration.test_registry_tls import make_ca, make_server_cert
from tests.wheelkit import make_wheel, sha256_of

pytestmark = pytest.mark.integration

SITE = f"opt/venv/lib/python3.11/site-packages/{runtime_layer.MODULE}"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        del format, args


class ConnectProxy(socketserver.ThreadingTCPServer):
    """An HTTP CONNECT proxy on 127.0.0.1 that records the targets it tunnelled to."""

    daemon_threads = True

    def __init__(self) -> None:
        self.seen: list[str] = []
        super().__init__(("127.0.0.1", 0), _Tunnel)


class _Tunnel(socketserver.StreamRequestHandler):
    server: ConnectProxy

    def handle(self) -> None:
        line = self.rfile.readline().decode()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass
        verb, target, _version = line.split()
        assert verb == "CONNECT", line
        self.server.seen.append(target)
        host, port = target.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=30) as upstream:
            self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self.wfile.flush()
            pair = {self.connection: upstream, upstream: self.connection}
            while True:
                ready, _, _ = select.select(list(pair), [], [], 30)
                if not ready:
                    return
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    pair[sock].sendall(data)


@dataclass(frozen=True)
class Index:
    root: Path
    ca: Path
    image: Path  # the runtime layer's files, laid out as in an image
    proxy: ConnectProxy

    def launcher(self, target: str, **env: str) -> subprocess.CompletedProcess[str]:
        """``python -m layerforge_runtime --target T ensure extra`` with an empty /etc/ssl."""
        require_tools("bwrap")
        argv = ["bwrap", "--ro-bind", "/", "/", "--tmpfs", "/etc/ssl", "--dev", "/dev",
                "--proc", "/proc", "--bind", str(self.root), str(self.root), "--clearenv",
                "--setenv", "PYTHONPATH", str(self.image / SITE.rsplit("/", 1)[0]),
                "--setenv", "LAYERFORGE_RUNTIME_DIR", str(self.image / runtime_layer.PINS_DIR),
                "--setenv", "PATH", "/usr/bin:/bin"]  # fmt: skip
        probe = [
            *argv,
            "--",
            sys.executable,
            "-c",
            "import ssl; print(ssl.get_default_verify_paths())",
        ]
        shown = subprocess.run(probe, capture_output=True, text=True, check=True, timeout=60)
        assert "cafile=None, capath=None" in shown.stdout, shown.stdout  # no system CA store
        for key, value in env.items():
            argv += ["--setenv", key, value]
        argv += ["--", sys.executable, "-m", runtime_layer.MODULE, "--target",
                 str(self.root / target), "ensure", "extra"]  # fmt: skip
        return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)


@pytest.fixture
def index(tmp_path: Path) -> Iterator[Index]:
    require_tools("openssl")
    wheels = tmp_path / "wheels"
    wheel = make_wheel(wheels, "tiny", "1.0")
    ca = make_ca(tmp_path / "ca", "layerforge-runtime-test-ca")
    cert, key = make_server_cert(tmp_path / "ca", ca)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(wheels))
    )
    server.socket = context.wrap_socket(server.socket, server_side=True)
    proxy = ConnectProxy()
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (server, proxy)]
    for thread in threads:
        thread.start()
    url = f"https://127.0.0.1:{server.server_address[1]}/{wheel.name}"
    pkg = Package("tiny", "1.0", wheel.name, url, sha256_of(wheel), wheel.stat().st_size)
    locked = LockedNode("sha256:0", runtime=(LockedGroup("extra", "sha256:1", (pkg,)),))
    image = tmp_path / "image"
    for entry in runtime_layer.runtime_entries(locked, "3.11"):
        path = image / entry.path
        if entry.kind == "dir":
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(entry.data or b"")
    try:
        yield Index(tmp_path, ca[0], image, proxy)
    finally:
        for s in (server, proxy):
            s.shutdown()
            s.server_close()


def test_ensure_over_tls_without_system_ca(index: Index) -> None:
    baked = index.image / SITE / "cacert.pem"
    assert baked.stat().st_size > 100_000

    alone = index.launcher("t1")
    assert alone.returncode == 3, alone.stderr
    assert f"{baked} (the CA bundle baked in the image)" in alone.stderr
    assert "SSL_CERT_FILE" in alone.stderr and "proxy" not in alone.stderr
    assert not (index.root / "t1" / "tiny").exists()

    trusted = index.launcher("t2", SSL_CERT_FILE=str(index.ca))
    assert trusted.returncode == 0, trusted.stderr
    assert (index.root / "t2" / "tiny" / "__init__.py").is_file()
    assert index.proxy.seen == []

    ours = index.launcher("t3", LAYERFORGE_RUNTIME_CERT=str(index.ca))
    assert ours.returncode == 0, ours.stderr


def test_https_proxy_and_no_proxy_are_honoured(index: Index) -> None:
    proxy = f"http://127.0.0.1:{index.proxy.server_address[1]}"
    via = index.launcher("t1", SSL_CERT_FILE=str(index.ca), https_proxy=proxy)
    assert via.returncode == 0, via.stderr
    assert len(index.proxy.seen) == 1 and index.proxy.seen[0].startswith("127.0.0.1:")
    around = index.launcher("t2", SSL_CERT_FILE=str(index.ca), HTTPS_PROXY=proxy,
                            no_proxy="127.0.0.1")  # fmt: skip
    assert around.returncode == 0, around.stderr
    assert len(index.proxy.seen) == 1  # went around the proxy
    assert (index.root / "t2" / "tiny" / "__init__.py").is_file()
