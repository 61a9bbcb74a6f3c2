"""A requirement change reuses the own layers of unchanged distributions, blob for blob.

A small real project: a root base on a minimal root filesystem directory (a stand-in
interpreter is enough: nothing runs, --no-verify) with small real wheels and a tiny
layer_threshold, so certifi and idna get layers of their own and six shares the rest layer;
a service on it. Changing the base's requirements must write only its shared layer (plus
the new own layer of a large distribution that was added), and give the image a cold build
of the same lock gives in a fresh store.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from layerforge.cli import main
from layerforge.oci.layout import Store
from tests.conftest import require_tools
from tests.integration.tiny import stand_in_os

pytestmark = pytest.mark.integration

MANIFEST = """
[project]
name = "reuse"
python = "3.11"
layer_threshold = "200KB"   # certifi (240 KB), idna (340 KB), charset-normalizer (780 KB)

[bases.base]
from = "rootfs:os"
requirements = [{reqs}]

[services.svc]
base = "base"
source = "svc"
command = ["python", "-m", "svc"]
"""


def write_project(root: Path, *reqs: str) -> None:
    stand_in_os(root / "os")
    (root / "svc/svc").mkdir(parents=True, exist_ok=True)
    (root / "svc/svc/__main__.py").write_text("import idna\n")
    text = MANIFEST.format(reqs=", ".join(f'"{r}"' for r in reqs))
    (root / "layerforge.toml").write_text(text)


def lock(root: Path, cache: Path) -> None:
    assert main(["lock", "-f", str(root), "--cache-dir", str(cache)]) == 0


def build(
    root: Path, cache: Path, capsys: pytest.CaptureFixture[str], *, verify: bool = False
) -> list[dict[str, object]]:
    """Build (with --no-verify unless ``verify``); returns the JSON events."""
    capsys.readouterr()
    argv = ["build", "-f", str(root), "--cache-dir", str(cache), "--json"]
    argv += [] if verify else ["--no-verify"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


def inodes(root: Path) -> dict[str, int]:
    """Blob digest -> inode: a blob written again (even to the same digest) gets a new one."""
    blobs = root / ".layerforge/blobs/sha256"
    return {f"sha256:{p.name}": os.stat(p).st_ino for p in blobs.iterdir()}


def layers_of(root: Path, ref: str) -> list[tuple[str, str]]:
    """(digest, created_by) of each layer of an image, in order."""
    store = Store.open(root / ".layerforge", create=False)
    desc = store.resolve(ref)
    assert desc is not None
    manifest = store.read_json(desc.digest)
    config = store.read_json(manifest["config"]["digest"])
    made = [h["created_by"] for h in config["history"] if not h.get("empty_layer")]
    return list(zip([x["digest"] for x in manifest["layers"]], made, strict=True))


def manifests(root: Path) -> dict[str, str]:
    store = Store.open(root / ".layerforge", create=False)
    return {ref: d.digest for ref, d in store.tags().items() if ref.endswith(":latest")}


def written_layers(events: list[dict[str, object]]) -> list[str]:
    return [str(e["task"]) for e in events if e["event"] == "start" and "layer:" in str(e["task"])]


def cold_build(source: Path, target: Path, cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The same project and lock, built in a fresh store."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".layerforge"))
    build(target, cache, capsys)


def test_requirement_change_reuses_own_layers_and_matches_a_cold_build(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache, proj = tmp_path / "cache", tmp_path / "proj"
    write_project(proj, "certifi", "idna", "six")
    lock(proj, cache)
    build(proj, cache, capsys)
    before = layers_of(proj, "base:latest")
    own = {made: digest for digest, made in before if "certifi" in made or "idna" in made}
    assert len(own) == 2  # certifi and idna have layers of their own; six shares the last one
    blobs, tags = inodes(proj), manifests(proj)

    # 1. A small distribution more: only the shared layer is installed and written.
    write_project(proj, "certifi", "idna", "six", "iniconfig")
    lock(proj, cache)
    events = build(proj, cache, capsys)
    assert written_layers(events) == ["layer:base:2 packages", "layer:svc:app"]
    installs = [e["message"] for e in events if e["task"] == "install:base" and "message" in e]
    assert installs == ["installing 2 distributions"]  # six and iniconfig, not certifi or idna
    after = inodes(proj)
    rewritten = {d for d, ino in after.items() if blobs.get(d) != ino}
    base, svc = manifests(proj)["base:latest"], manifests(proj)["svc:latest"]
    store = Store.open(proj / ".layerforge", create=False)
    configs = {store.read_json(m)["config"]["digest"] for m in (base, svc)}
    shared = layers_of(proj, "base:latest")[-1][0]
    app = layers_of(proj, "svc:latest")[-1][0]  # same digest as before, tarred again
    sboms = [store.resolve(f"{n}:sha256-{m[7:]}") for n, m in (("base", base), ("svc", svc))]
    sbom_blobs = {
        b for d in sboms if d for b in (d.digest, store.read_json(d.digest)["layers"][0]["digest"])
    }
    assert rewritten == {base, svc, *configs, shared, app, *sbom_blobs}  # and the images' SBOMs
    assert [x for x in layers_of(proj, "base:latest") if x[1] in own] == [
        (d, m) for m, d in own.items()
    ]
    assert tags["base:latest"] != base
    cold_build(proj, tmp_path / "cold1", cache, capsys)
    assert manifests(tmp_path / "cold1") == manifests(proj)

    # 2. A large distribution more, whose own layer sorts between the reused two.
    write_project(proj, "certifi", "idna", "six", "iniconfig", "charset-normalizer")
    lock(proj, cache)
    events = build(proj, cache, capsys)
    written = written_layers(events)
    assert len(written) == 3 and written[0].startswith("layer:base:charset_normalizer")
    made = [m for _, m in layers_of(proj, "base:latest")]
    own_names = [m.split()[2] for m in made if m.startswith("layerforge: pip")][:-1]
    assert own_names == ["certifi", "charset_normalizer", "idna"]  # then "3 packages"
    cold_build(proj, tmp_path / "cold2", cache, capsys)
    assert manifests(tmp_path / "cold2") == manifests(proj)


def test_threshold_above_a_reused_distribution_puts_it_back_in_the_shared_layer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The cache remembers installed sizes: under a higher threshold certifi is installed
    again and shares the rest layer, as a cold build would do."""
    cache, proj = tmp_path / "cache", tmp_path / "proj"
    write_project(proj, "certifi", "six")
    lock(proj, cache)
    build(proj, cache, capsys)
    manifest = proj / "layerforge.toml"
    manifest.write_text(manifest.read_text().replace('"200KB"', '"300KB"'))
    events = build(proj, cache, capsys)
    assert written_layers(events) == ["layer:base:2 packages", "layer:svc:app"]
    cold_build(proj, tmp_path / "cold", cache, capsys)
    assert manifests(tmp_path / "cold") == manifests(proj)


COMPILED = """
[project]
name = "reuse-pyc"
python = "3.11"
layer_threshold = "200KB"

[bases.os]
from = {{ debootstrap = "bookworm" }}

[bases.py]
from = "os"
compile_bytecode = true
requirements = [{reqs}]
verify = ["import certifi, idna, six"]
"""


def test_reuse_with_compile_bytecode_matches_a_cold_build(
    tmp_path: Path, shared_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With compile_bytecode the own layers hold .pyc made by the image's Python; reused
    (same image below), they still give the cold build's bytes."""
    require_tools("debootstrap", "bwrap")
    proj = tmp_path / "proj"
    proj.mkdir()
    manifest = proj / "layerforge.toml"
    manifest.write_text(COMPILED.format(reqs='"certifi", "idna", "six"'))
    lock(proj, shared_cache)
    build(proj, shared_cache, capsys)
    manifest.write_text(COMPILED.format(reqs='"certifi", "idna", "six", "iniconfig"'))
    lock(proj, shared_cache)
    events = build(proj, shared_cache, capsys, verify=True)
    assert written_layers(events) == ["layer:py:2 packages"]
    tasks = [e["task"] for e in events if e["event"] == "start"]
    assert "bytecode:py" in tasks and "verify:py" in tasks
    made = [m for _, m in layers_of(proj, "py:latest")]
    assert [m.split()[2] for m in made if m.startswith("layerforge: pip")] == [
        "certifi", "idna", "2",
    ]  # fmt: skip
    store = Store.open(proj / ".layerforge", create=False)
    certifi = layers_of(proj, "py:latest")[-3][0]
    with tarfile.open(store.blob_path(certifi)) as tar:  # gzip: detected
        assert any(n.endswith(".cpython-311.pyc") for n in tar.getnames())
    cold_build(proj, tmp_path / "cold", shared_cache, capsys)
    assert manifests(tmp_path / "cold") == manifests(proj)
