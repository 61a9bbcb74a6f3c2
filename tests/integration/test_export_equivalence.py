"""The exported Dockerfile builds the image config our builder builds (issue 14, item 1).

A tiny project (a root base from a root filesystem directory, and one service whose env,
labels, command, entrypoint and workdir hold ``$``, ``${}``, ``$$``, quotes, backslashes, a
tab and unicode) is built by layerforge; the service's exported Dockerfile is then built by
``buildah bud`` FROM our base image (``PARENT_IMAGE=oci:STORE:base:TAG``), and the two
configs are compared field by field. A service needs no RUN, so a bud takes well under a
second.

The store path has no component starting with a dot: buildah names an ``oci:`` image after
its path, and rejects ``.layerforge``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from layerforge.oci import media
from layerforge.oci.layout import Descriptor, Store, canonical_json
from tests.conftest import require_tools
from tests.integration.hostroot import copy_programs
from tests.integration.tiny import cli, cli_json, tiny_project
from tests.integration.tools import Buildah, skopeo_raw

pytestmark = pytest.mark.integration

# Labels our builder writes that the export cannot: the parent's manifest digest exists only
# once the parent is built, and the revision only in a git checkout (documented differences).
IGNORED_LABELS = {"org.opencontainers.image.base.digest", "org.opencontainers.image.revision"}
FIELDS = ("Env", "Entrypoint", "Cmd", "WorkingDir", "User", "Labels", "ExposedPorts", "Healthcheck")

NASTY_SERVICE = r"""
workdir = "/srv/my $dir/ü"
command = ["sh", "-c", "echo \"$HOME\"\na\\b", "${X}", "$$", "é"]
[services.svc.env]
LD_LIBRARY_PATH = "/usr/local/cuda/lib64:$LD_LIBRARY_PATH"
P2 = "/x:${PATH}"
Q = "a \"q\" b\\c"
U = "café ☃ \u2028"
T = "tab\there"
D = "$$"
E = "x\\"
[services.svc.labels]
cost = "cost ${CENTER} $HOME"
"x.y" = "it's \\ ok"
"with space" = "%{a} ${b}"
"""


def normalise(config: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field in FIELDS:
        value = config.get(field)
        if field == "Labels" and value:
            value = {k: v for k, v in value.items() if k not in IGNORED_LABELS}
        if field == "Env" and value:  # buildah moves a replaced variable to the end
            value = dict(item.partition("=")[::2] for item in value)
        out[field] = value or None  # absent, null, "" and [] are all "not set"
    return out


def build_and_bud(
    directory: Path, buildah: Buildah, *, root: str | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(our config, buildah's config) of the service ``svc``, built by layerforge and from
    its export: FROM our base image, or with ``root`` (the base's ROOT_IMAGE), the base is
    built from its exported Dockerfile too, and its config compared on the way."""
    store = directory.parent / "store"
    common = ["-f", str(directory), "--store", str(store), "--cache-dir", str(directory.parent)]
    code, _out, err = cli("lock", *common)
    assert code == 0, err
    cli_json("build", *common, "--no-verify")
    code, _out, err = cli("export", "dockerfiles", *common, "--no-copy-link", "--no-rootfs")
    assert code == 0, err
    parent = f"oci:{store}:base:latest"
    if root is not None:
        theirs = bud(buildah, directory, "base", f"ROOT_IMAGE={root}")
        ours = skopeo_raw(store, "base:latest", config=True)["config"]
        assert normalise(theirs) == normalise(ours)
        parent = "localhost/base-exported"
    theirs = bud(buildah, directory, "svc", f"PARENT_IMAGE={parent}")
    return skopeo_raw(store, "svc:latest", config=True)["config"], theirs


def bud(buildah: Buildah, directory: Path, node: str, arg: str) -> dict[str, Any]:
    """buildah's image config of ``node``'s exported Dockerfile (docker format: it keeps a
    Healthcheck; no io.buildah.version label)."""
    docker = directory / "docker" / node
    buildah(
        "bud", "--identity-label=false", "--format", "docker", "--pull-never", "--layers=false",
        "--build-arg", arg, "--ignorefile", str(docker / "Dockerfile.dockerignore"),
        "-f", str(docker / "Dockerfile"), "-t", f"localhost/{node}-exported", str(directory),
    )  # fmt: skip
    inspected = json.loads(buildah("inspect", "--type", "image", f"localhost/{node}-exported"))
    config: dict[str, Any] = inspected["Docker"]["config"]
    return config


def test_service_config_equals_buildah_config(tmp_path: Path) -> None:
    require_tools("buildah", "skopeo")
    directory = tiny_project(tmp_path / "p")
    manifest = directory / "layerforge.toml"
    manifest.write_text(manifest.read_text().replace('command = ["python", "-m", "svc"]\n', ""))
    with manifest.open("a") as f:
        f.write(NASTY_SERVICE)
    ours, theirs = build_and_bud(directory, Buildah(tmp_path / "buildah"))
    assert "E=x\\" in ours["Env"]  # literal, as written
    assert "LD_LIBRARY_PATH=/usr/local/cuda/lib64:$LD_LIBRARY_PATH" in ours["Env"]
    assert normalise(theirs) == normalise(ours)


def os_layout(store: Path, layout: Path, config: dict[str, Any]) -> None:
    """An OCI layout ``os:v1``: the layers of ``base:latest`` in ``store`` under ``config``
    (as a registry image such as python:3.12-slim has one, with a Cmd)."""
    source = Store.open(store, create=False)
    desc = source.resolve("base:latest")
    assert desc is not None
    manifest = source.read_json(desc.digest)
    target = Store.open(layout)
    for layer in manifest["layers"]:
        blob = layer["digest"].split(":", 1)[1]
        shutil.copy(source.root / "blobs/sha256" / blob, layout / "blobs/sha256" / blob)
    base = source.read_json(manifest["config"]["digest"])
    config_bytes = canonical_json({
        "architecture": "amd64", "os": "linux", "config": config,
        "rootfs": base["rootfs"], "history": base["history"],
    })  # fmt: skip
    digest = target.put_bytes(config_bytes)
    body = canonical_json({
        "schemaVersion": 2, "mediaType": media.OCI_MANIFEST,
        "config": {"mediaType": media.OCI_CONFIG, "digest": digest, "size": len(config_bytes)},
        "layers": manifest["layers"],
    })  # fmt: skip
    target.tag("os:v1", Descriptor(media.OCI_MANIFEST, target.put_bytes(body), len(body)))


def shell_rootfs(directory: Path) -> None:
    """tiny's root filesystem plus the host's sh, mkdir, rm and find (and their libraries),
    enough for the exported root base's venv RUN; its python3.11 makes the venv directory."""
    copy_programs(directory / "os", ["sh"], bindir="bin")
    copy_programs(directory / "os", ["mkdir", "rm", "find"])
    python = directory / "os/usr/bin/python3.11"
    python.write_text('#!/bin/sh\nmkdir -p "$3/bin"\n')
    python.chmod(0o755)


def test_root_from_an_image_with_cmd_and_entrypoint(tmp_path: Path) -> None:
    """A root base from an image whose config has a Cmd and an Entrypoint: our builder takes
    the image's files and Env only, so the exported base must not inherit the other two (a
    registry image's entrypoint script would otherwise run in front of every command), and
    a service that sets only an entrypoint gets no Cmd in either."""
    require_tools("buildah", "skopeo")
    source = tiny_project(tmp_path / "t" / "tiny")
    shell_rootfs(source)
    store = ["--store", str(tmp_path / "t" / "store"), "--cache-dir", str(tmp_path)]
    assert cli("lock", "-f", str(source), *store)[0] == 0
    cli_json("build", "-f", str(source), *store, "--no-verify")
    directory = tiny_project(tmp_path / "p", base="oci:layout:os:v1")
    config = {
        "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8"],
        "Cmd": ["python3"],
        "Entrypoint": ["/docker-entrypoint.sh"],
    }
    os_layout(tmp_path / "t" / "store", directory / "layout", config)
    manifest = directory / "layerforge.toml"
    text = manifest.read_text()
    manifest.write_text(text.replace("command = [", "entrypoint = ["))
    buildah = Buildah(tmp_path / "buildah")
    ours, theirs = build_and_bud(directory, buildah, root=f"oci:{directory / 'layout'}:os:v1")
    assert ours["Entrypoint"] == ["python", "-m", "svc"]
    assert normalise(theirs) == normalise(ours)
    assert normalise(ours)["Cmd"] is None
