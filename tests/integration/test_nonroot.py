"""Issue 14 item 2: a non-root image, built for real on a debootstrap base: the user layer's
owners, the config, verify run as the declared user (with the setuid drop of a root host:
file ownership really checked), and buildah running the image as that user."""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any

import pytest

from layerforge.cli import main
from layerforge.oci.compress import open_layer
from layerforge.oci.layout import Store
from tests.integration.tools import Buildah

PROJECT = """
[project]
name = "nonroot"
python = "3.11"

[bases.os]
from = { debootstrap = "bookworm" }
user = "app"
writable = ["/srv/cache"]
expose = [8000]
verify = [
  "sh: test $(id -u) = 10001 && test $(id -g) = 10001 && test $(id -un) = app",
  "sh: test -w /srv/cache && touch /srv/cache/x",
  "sh: test -w \\"$HOME\\" && test \\"$HOME\\" = /home/app",
  "sh: ! touch /opt/venv/x 2>/dev/null && ! test -w /etc/passwd && test -r /etc/passwd",
  "import os; st = os.stat('/opt/venv/bin'); assert (st.st_uid, st.st_mode & 0o022) == (0, 0)",
  "s = open('/proc/self/status').read(); assert 'CapEff:\\t0000000000000000' in s, s",
  "s = open('/proc/self/status').read(); assert 'NoNewPrivs:\\t1' in s, s",
  # the bytecode of what a check imports is written (gpu's checks of the example read it)
  '''import json, importlib.util as u
assert open(u.cache_from_source(json.__file__), 'rb').read(4) == u.MAGIC_NUMBER''',
]

[services.svc]
base = "os"
source = "svc"
writable = ["/app/cache"]
healthcheck = { command = ["python", "-c", "import svc"], interval = "30s", retries = 3 }
command = ["python", "-m", "svc"]
verify = [
  "import svc, os; assert os.getuid() == 10001",
  "sh: test -w /app/cache && ! test -w /app",
]
"""


def _members(store: Store, layer: dict[str, Any]) -> dict[str, tarfile.TarInfo]:
    path = store.blob_path(layer["digest"])
    with (
        open_layer(path, layer["mediaType"]) as stream,
        tarfile.open(fileobj=stream, mode="r|") as tar,
    ):
        return {m.name.rstrip("/"): m for m in tar}


def _image(store: Store, ref: str) -> tuple[dict[str, Any], dict[str, Any]]:
    desc = store.resolve(ref)
    assert desc is not None
    manifest = store.read_json(desc.digest)
    return manifest, store.read_json(manifest["config"]["digest"])


@pytest.fixture
def built(tmp_path: Path, shared_cache: Path) -> Path:
    project = tmp_path / "p"
    (project / "svc/svc").mkdir(parents=True)
    (project / "svc/svc/__init__.py").write_text("")
    (project / "svc/svc/__main__.py").write_text("print('up')\n")
    (project / "layerforge.toml").write_text(PROJECT)
    common = ["-f", str(project), "--cache-dir", str(shared_cache)]
    assert main(["lock", *common]) == 0
    assert main(["build", *common]) == 0  # verify runs: every check above passed
    return project


def test_verify_runs_as_the_declared_user(built: Path) -> None:
    store = Store.open(built / ".layerforge", create=False)
    manifest, config = _image(store, "os:latest")
    inner = config["config"]
    assert inner["User"] == "10001:10001"
    assert inner["ExposedPorts"] == {"8000/tcp": {}}
    history = [h for h in config["history"] if not h.get("empty_layer")]
    user_layers = [
        (layer, h)
        for layer, h in zip(manifest["layers"], history, strict=True)
        if h["created_by"].startswith("layerforge: user")
    ]
    assert len(user_layers) == 1
    members = _members(store, user_layers[0][0])
    assert sorted(members) == ["etc/group", "etc/gshadow", "etc/passwd", "etc/shadow",
                               "home/app", "srv/cache"]  # fmt: skip
    owners = {name: (m.uid, m.gid, oct(m.mode)) for name, m in members.items()}
    assert owners["home/app"] == (10001, 10001, "0o750")
    assert owners["srv/cache"] == (10001, 10001, "0o755")
    assert owners["etc/passwd"] == (0, 0, "0o644")
    passwd = _members_data(store, user_layers[0][0], "etc/passwd")
    assert passwd.endswith(b"app:x:10001:10001::/home/app:/usr/sbin/nologin\n")
    assert passwd.startswith(b"root:x:0:0:")  # the parent's lines kept

    svc_manifest, svc = _image(store, "svc:latest")
    # /app/cache (under the workdir) is in the service's application layer, no user layer
    assert len(svc_manifest["layers"]) == len(manifest["layers"]) + 1
    app = _members(store, svc_manifest["layers"][-1])
    assert (app["app/cache"].uid, app["app/cache"].gid, app["app"].uid) == (10001, 10001, 0)
    svc_inner = svc["config"]
    assert svc_inner["User"] == "10001:10001"  # inherited from the base
    assert svc_inner["ExposedPorts"] == {"8000/tcp": {}}
    assert svc_inner["Healthcheck"] == {
        "Test": ["CMD", "python", "-c", "import svc"],
        "Interval": 30_000_000_000,
        "Retries": 3,
    }


def _members_data(store: Store, layer: dict[str, Any], name: str) -> bytes:
    path = store.blob_path(layer["digest"])
    with (
        open_layer(path, layer["mediaType"]) as stream,
        tarfile.open(fileobj=stream, mode="r|") as tar,
    ):
        for member in tar:
            if member.name == name:
                src = tar.extractfile(member)
                assert src is not None
                return src.read()
    raise AssertionError(f"no {name}")


def test_a_check_that_needs_root_fails_as_the_user(built: Path, shared_cache: Path) -> None:
    """The checks above would pass as root too if verify ignored the user: this one
    (writing where only root may) must fail, naming the statement."""
    text = (built / "layerforge.toml").read_text()
    text = text.replace(
        'verify = [\n  "import svc', 'verify = [\n  "sh: touch /etc/x",\n  "import svc'
    )
    (built / "layerforge.toml").write_text(text)
    code = main(["verify", "svc", "-f", str(built), "--cache-dir", str(shared_cache)])
    assert code != 0


def test_buildah_runs_the_image_as_the_declared_user(built: Path, tmp_path: Path) -> None:
    buildah = Buildah(tmp_path / "buildah")
    store = built / ".layerforge"
    # a dot-free path for the containers tools (see docs/dev/issue14-plan.md 5.3)
    link = tmp_path / "lfstore"
    link.symlink_to(store)
    buildah("from", "--pull-never", "--name", "nonroot", f"oci:{link}:svc:latest")
    out = buildah("run", "nonroot", "--", "sh", "-c",
                  "id -u; python -c 'import svc; print(\"app ok\")'; touch /app/cache/x && echo "
                  "cache ok; touch /opt/venv/x 2>&1 || echo venv refused")  # fmt: skip
    assert out.split()[0] == "10001", out
    assert "app ok" in out and "cache ok" in out and "venv refused" in out, out
    assert "Permission denied" in out, out
