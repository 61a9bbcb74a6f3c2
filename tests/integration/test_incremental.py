"""Deterministic and incremental builds, asserted blob by blob.

Verify statements are skipped here (--no-verify): test_sandbox and test_fleet run them; these
tests are about which bytes are written.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from layerforge.cli import main
from layerforge.lock.lockfile import read as read_lock
from layerforge.oci.layout import Store
from tests.conftest import EXAMPLE, require_tools
from tests.integration.conftest import build_fleet

pytestmark = pytest.mark.integration


def copy_example(target: Path) -> Path:
    shutil.copytree(EXAMPLE, target, ignore=shutil.ignore_patterns(".layerforge"))
    return target


def digests(directory: Path) -> dict[str, str]:
    store = Store.open(directory / ".layerforge", create=False)
    return {ref: d.digest for ref, d in store.tags().items() if ref.endswith(":latest")}


def blobs(directory: Path) -> set[str]:
    return Store.open(directory / ".layerforge", create=False).blobs()


def media_types(directory: Path, new: set[str]) -> list[str]:
    """What each new blob is: 'manifest', 'config' or 'layer' (the SBOM every built image
    gets, its document and its artifact manifest, is left out)."""
    store = Store.open(directory / ".layerforge", create=False)
    kinds = []
    for digest in new:
        try:
            doc = json.loads(store.read_bytes(digest))
        except (UnicodeDecodeError, ValueError):
            kinds.append("layer")
            continue
        if "artifactType" in doc or "bomFormat" in doc:
            continue
        kinds.append("manifest" if "layers" in doc else "config")
    return sorted(kinds)


@pytest.fixture
def fleet_a(tmp_path: Path, shared_cache: Path) -> Path:
    require_tools("debootstrap")
    directory = copy_example(tmp_path / "a")
    build_fleet(directory, shared_cache, "--no-verify")
    return directory


def test_two_fresh_builds_give_identical_digests(
    fleet_a: Path, tmp_path: Path, shared_cache: Path
) -> None:
    b = copy_example(tmp_path / "b")
    build_fleet(b, shared_cache, "--no-verify")
    first, second = digests(fleet_a), digests(b)
    assert len(first) == 7
    assert first == second
    assert blobs(fleet_a) == blobs(b)


def test_noop_build_writes_nothing(fleet_a: Path, shared_cache: Path) -> None:
    before = blobs(fleet_a)
    images = build_fleet(fleet_a, shared_cache, "--no-verify")
    assert {i["status"] for i in images.values()} == {"cached"}
    assert blobs(fleet_a) == before


def test_source_change_writes_only_app_layer_config_and_manifest(
    fleet_a: Path, shared_cache: Path
) -> None:
    before, tags = blobs(fleet_a), digests(fleet_a)
    main_py = fleet_a / "services/api/api/main.py"
    main_py.write_text(main_py.read_text() + "\n# a one-line change\n")
    images = build_fleet(fleet_a, shared_cache, "--no-verify")
    assert {n for n, i in images.items() if i["status"] == "built"} == {"api"}
    new = blobs(fleet_a) - before
    assert media_types(fleet_a, new) == ["config", "layer", "manifest"]
    after = digests(fleet_a)
    assert {r for r in after if after[r] != tags[r]} == {"api:latest"}


def test_base_requirement_change_rebuilds_it_and_descendants_only(
    fleet_a: Path, shared_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before, tags = blobs(fleet_a), digests(fleet_a)
    manifest = fleet_a / "layerforge.toml"
    manifest.write_text(
        manifest.read_text().replace(
            'requirements = ["safetensors", "tokenizers"]',
            'requirements = ["safetensors", "tokenizers", "tabulate"]',
        )
    )
    assert main(["lock", "-f", str(fleet_a), "--cache-dir", str(shared_cache)]) == 0
    capsys.readouterr()
    assert main(["plan", "-f", str(fleet_a), "--json"]) == 0
    plan = {s["node"]: s for s in json.loads(capsys.readouterr().out)["steps"]}
    assert {n for n, s in plan.items() if s["status"] == "build"} == {"gpu", "training"}
    (tabulate,) = [p for p in read_lock(fleet_a / "layerforge.lock").nodes["gpu"].packages
                   if p.name == "tabulate"]  # fmt: skip
    assert plan["gpu"]["reasons"] == [f"requirements changed: +tabulate {tabulate.version}"]
    assert plan["training"]["reasons"] == ["parent gpu changes"]
    images = build_fleet(fleet_a, shared_cache, "--no-verify")
    assert {n for n, i in images.items() if i["status"] == "built"} == {"gpu", "training"}
    new = blobs(fleet_a) - before
    # gpu: its dependency layer, config, manifest; training: config, manifest (its app
    # layer is byte-identical to the one it had, so it is not written again).
    assert media_types(fleet_a, new) == ["config", "config", "layer", "manifest", "manifest"]
    after = digests(fleet_a)
    assert {r for r in after if after[r] != tags[r]} == {"gpu:latest", "training:latest"}


WRITER = """
import sys, time
from pathlib import Path
from layerforge.oci.layout import Store

store = Store.open(Path(sys.argv[1]), create=False)
with store.ingest() as writer:
    for _ in range(48):
        writer.write(bytes(range(256)) * 256)  # 3 MB, more than the writer buffers
    writer.flush()
    print("written", flush=True)
    time.sleep(600)  # killed here, before commit
"""


def assert_store_valid(store: Store) -> None:
    """Every tag reaches a manifest whose config and layers exist, with their digest and size."""
    assert store.tags()
    for ref, desc in store.tags().items():
        manifest = json.loads(store.read_bytes(desc.digest))  # verifies the digest
        assert store.blob_path(desc.digest).stat().st_size == desc.size, ref
        for blob in [manifest["config"], *manifest["layers"]]:
            path = store.blob_path(blob["digest"])
            assert path.stat().st_size == blob["size"], (ref, blob["digest"])
            assert "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest() == blob["digest"]


def test_a_killed_blob_write_leaves_the_store_valid(fleet_a: Path, shared_cache: Path) -> None:
    """A blob being written sits under a temporary name until it is verified and renamed, so
    a writer killed mid-blob (SIGKILL: no cleanup runs) leaves no blob and no broken tag."""
    root = fleet_a / ".layerforge"
    store = Store.open(root, create=False)
    before, tags = store.blobs(), store.tags()
    args = [sys.executable, "-c", WRITER, str(root)]
    with subprocess.Popen(args, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None and proc.stdout.readline() == "written\n"
            files = {p.name: p for p in (root / "blobs/sha256").iterdir()}
            (partial,) = set(files) - {d.removeprefix("sha256:") for d in before}
            assert files[partial].stat().st_size == 3 * 2**20  # the bytes are on disk...
        finally:
            proc.kill()
    assert store.blobs() == before  # ...but not taken for a blob
    assert store.tags() == tags
    assert_store_valid(store)
    images = build_fleet(fleet_a, shared_cache, "--no-verify")  # and the next build is a no-op
    assert {i["status"] for i in images.values()} == {"cached"}
    assert store.blobs() == before
