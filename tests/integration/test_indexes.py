"""Named package indexes: a requirement pinned to an explicit index, credentials from the
environment or netrc (never written anywhere), and runtime groups from an authenticated index.

Two PEP 503 indexes on 127.0.0.1 (tests/indexserver.py): ``a`` (no auth, the default) has
``torchy`` 3.0 and 2.0 (other bytes than b's) and ``beta`` 1.0; ``b`` (basic auth) has
``torchy`` 2.0 and is explicit, so only what is pinned to it comes from it. The project is a
root base on a stand-in root filesystem (nothing runs: ``--no-verify``).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from layerforge.builder.runtime_layer import runtime_entries
from layerforge.lock import lockfile
from layerforge.runtime import launcher
from tests.indexserver import Index, serve
from tests.integration.tiny import cli
from tests.wheelkit import make_wheel

pytestmark = pytest.mark.integration

USER, PASSWORD = "lf-index-user", "s3cr3t-Pw-7781"

MANIFEST = """
[project]
name = "idx"
python = "3.11"

[[project.index]]
name = "a"
url = "{a}"
default = true

[[project.index]]
name = "b"
url = "{b}"
explicit = true

[project.sources]
torchy = "b"

[bases.base]
from = "rootfs:os"
requirements = ["torchy", "beta"]
{extra}
"""


@dataclass(frozen=True)
class Indexes:
    a: Index
    b: Index


@pytest.fixture
def indexes(tmp_path: Path) -> Iterator[Indexes]:
    a_dir, b_dir = tmp_path / "wheels-a", tmp_path / "wheels-b"
    a_dir.mkdir()
    b_dir.mkdir()
    a_wheels = [
        make_wheel(a_dir, "torchy", "3.0"),
        # The same file name as b's torchy 2.0 with other bytes: a pin to b that looked at a
        # would fail its hash check.
        make_wheel(a_dir, "torchy", "2.0", files={"torchy/impostor.txt": b"from a\n"}),
        make_wheel(a_dir, "beta", "1.0"),
    ]
    b_wheels = [make_wheel(b_dir, "torchy", "2.0")]
    with serve(a_wheels) as a, serve(b_wheels, auth=(USER, PASSWORD)) as b:
        yield Indexes(a, b)


def project(root: Path, idx: Indexes, extra: str = "") -> Path:
    (root / "os/usr/bin").mkdir(parents=True)
    (root / "os/usr/bin/python3.11").write_text("#!/bin/sh\n")
    (root / "os/etc").mkdir()
    (root / "os/etc/os-release").write_text("ID=test\n")
    (root / "layerforge.toml").write_text(MANIFEST.format(a=idx.a.url, b=idx.b.url, extra=extra))
    return root


@pytest.fixture
def no_index_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("UV_INDEX_B_USERNAME", "UV_INDEX_B_PASSWORD", "UV_INDEX_URL", "UV_DEFAULT_INDEX"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("UV_NO_CACHE", "1")  # each test hits its own servers


def creds_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UV_INDEX_B_USERNAME", USER)
    monkeypatch.setenv("UV_INDEX_B_PASSWORD", PASSWORD)


def lock_and_build(root: Path, cache: Path, idx: Indexes) -> lockfile.Lock:
    code, _, err = cli("lock", "-f", str(root), "--cache-dir", str(cache))
    assert code == 0, err[-3000:]
    idx.a.hits.clear()
    idx.b.hits.clear()  # from here on: what the build downloads
    code, _, err = cli("build", "-f", str(root), "--cache-dir", str(cache), "--no-verify")
    assert code == 0, err[-3000:]
    return lockfile.read(root / "layerforge.lock")


def secrets_in(directory: Path) -> list[str]:
    """Files under ``directory`` holding the password or user:password, raw or gunzipped."""
    found: list[str] = []
    for path in directory.rglob("*"):
        if not path.is_file() or path.is_symlink():
            continue
        data = path.read_bytes()
        if data[:2] == b"\x1f\x8b":
            data += gzip.decompress(data)
        if PASSWORD.encode() in data or f"{USER}:".encode() in data:
            found.append(str(path))
    return found


@pytest.mark.usefixtures("no_index_env")
def test_pinned_requirement_comes_from_explicit_index(
    tmp_path: Path, indexes: Indexes, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds_env(monkeypatch)
    root = project(tmp_path / "p", indexes)
    lock = lock_and_build(root, tmp_path / "cache", indexes)
    pkgs = {p.name: p for p in lock.nodes["base"].packages}
    assert (pkgs["torchy"].version, pkgs["torchy"].index) == ("2.0", "b")
    assert (pkgs["beta"].version, pkgs["beta"].index) == ("1.0", None)
    assert dict(lock.indexes) == {"a": indexes.a.url, "b": indexes.b.url}
    text = (root / "layerforge.lock").read_text()
    assert f'[indexes]\na = "{indexes.a.url}"\nb = "{indexes.b.url}"\n' in text
    assert text.count("index = ") == 1
    # The build installed the pin from b (the only index that has torchy 2.0).
    assert indexes.b.hits == {"torchy-2.0-py3-none-any.whl": 1}
    assert indexes.a.hits == {"beta-1.0-py3-none-any.whl": 1}
    # Re-reading and re-locking changes nothing: the lock round-trips.
    assert lockfile.loads(text) == lock
    code, _, err = cli("lock", "--check", "-f", str(root), "--cache-dir", str(tmp_path / "cache"))
    assert code == 0, err


@pytest.mark.usefixtures("no_index_env")
@pytest.mark.parametrize("how", ["env", "netrc"])
def test_credentials_from_env_and_netrc(
    tmp_path: Path, indexes: Indexes, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    if how == "env":
        creds_env(monkeypatch)
    else:
        netrc = tmp_path / "netrc"
        netrc.write_text(f"machine 127.0.0.1\nlogin {USER}\npassword {PASSWORD}\n")
        netrc.chmod(0o600)
        monkeypatch.setenv("NETRC", str(netrc))
    root = project(tmp_path / "p", indexes)
    cache = tmp_path / "cache"
    lock = lock_and_build(root, cache, indexes)
    assert {p.name: p.version for p in lock.nodes["base"].packages} == {
        "torchy": "2.0",
        "beta": "1.0",
    }
    assert indexes.b.hits
    assert secrets_in(root) == []
    assert secrets_in(cache) == []


@pytest.mark.usefixtures("no_index_env")
def test_missing_credentials_names_the_index(tmp_path: Path, indexes: Indexes) -> None:
    root = project(tmp_path / "p", indexes)
    code, _, err = cli("lock", "-f", str(root), "--cache-dir", str(tmp_path / "cache"))
    assert code == 2, err  # ResolveError
    assert "index 'b'" in err
    assert indexes.b.url in err
    assert "UV_INDEX_B_USERNAME" in err
    assert "UV_INDEX_B_PASSWORD" in err
    assert "NETRC" in err
    assert "Traceback" not in err
    assert not (root / "layerforge.lock").exists()


@pytest.mark.usefixtures("no_index_env")
def test_runtime_group_from_authenticated_index(
    tmp_path: Path,
    indexes: Indexes,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    creds_env(monkeypatch)
    root = project(tmp_path / "p", indexes, extra='runtime = { gpu = ["torchy"] }')
    (root / "layerforge.toml").write_text(
        (root / "layerforge.toml").read_text().replace('["torchy", "beta"]', '["beta"]')
    )
    code, _, err = cli("lock", "-f", str(root), "--cache-dir", str(tmp_path / "cache"))
    assert code == 0, err[-3000:]
    lock = lockfile.read(root / "layerforge.lock")
    (group,) = lock.nodes["base"].runtime
    assert [(p.name, p.version, p.index) for p in group.packages] == [("torchy", "2.0", "b")]
    # The pins the image carries, written where the launcher reads them.
    pins = tmp_path / "image"
    for entry in runtime_entries(lock.nodes["base"], "3.11", indexes=dict(lock.indexes)):
        if entry.path.startswith("opt/layerforge/runtime/") and entry.data is not None:
            (pins / entry.path).parent.mkdir(parents=True, exist_ok=True)
            (pins / entry.path).write_bytes(entry.data)
    doc = json.loads((pins / "opt/layerforge/runtime/gpu.json").read_text())
    assert doc["wheels"][0]["index"] == "b"
    assert doc["indexes"] == {"b": indexes.b.url}
    target = tmp_path / "target"
    env = {"LAYERFORGE_RUNTIME_DIR": str(pins / "opt/layerforge/runtime")}
    # Without credentials: a clear error naming the index and the variables.
    capsys.readouterr()
    assert launcher.main(["--target", str(target), "ensure", "gpu"], env=env) == 3
    err = capsys.readouterr().err
    assert "401 Unauthorized by index 'b'" in err
    assert "LAYERFORGE_RUNTIME_INDEX_B_USERNAME" in err
    # With the launcher's own variables.
    creds = {
        "LAYERFORGE_RUNTIME_INDEX_B_USERNAME": USER,
        "LAYERFORGE_RUNTIME_INDEX_B_PASSWORD": PASSWORD,
    }
    assert launcher.main(["--target", str(target), "ensure", "gpu"], env={**env, **creds}) == 0
    assert (target / "torchy" / "__init__.py").is_file()
    assert not list(target.glob("torchy-3*"))
    assert list(target.glob("torchy-2.0.dist-info"))
