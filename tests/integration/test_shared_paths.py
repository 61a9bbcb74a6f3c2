"""Files that several distributions install at the same path.

The nvidia-* wheels of CUDA torch all ship ``nvidia/__init__.py``; two tools may ship a
``bin/`` script of the same name. Small wheels made here reproduce the shapes: one above the
layer threshold (an own layer), the others sharing the rest layer, with identical and with
different bytes at the shared path. Same bytes must give one tar entry per layer; different
bytes must give one deterministic winner (the later install in dependency order, then by
name), the same in every layer that holds the path and in every cold build.
"""

from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path

import pytest

from layerforge.cli import main
from layerforge.oci.layout import Store
from tests.integration.tiny import stand_in_os
from tests.wheelkit import make_wheel

pytestmark = pytest.mark.integration

SITE = "opt/venv/lib/python3.11/site-packages"
BIG = bytes(range(256)) * 1200  # 300 KB: above the 200KB threshold, so an own layer

MANIFEST = """
[project]
name = "shared"
python = "3.11"
find_links = ["wheels"]
layer_threshold = "200KB"

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
    (root / "svc/svc/__main__.py").write_text("print('svc')\n")
    text = MANIFEST.format(reqs=", ".join(f'"{r}"' for r in reqs))
    (root / "layerforge.toml").write_text(text)


def nvidia_family(wheels: Path, *, small_b_init: bytes = b"") -> None:
    """nvidia-big (own layer), nvidia-small-a and nvidia-small-b (rest layer), each with the
    namespace file ``nvidia/__init__.py``."""
    make_wheel(
        wheels,
        "nvidia_big",
        "1.0",
        package=False,
        files={"nvidia/__init__.py": b"", "nvidia/big/lib.so": BIG},
    )
    make_wheel(
        wheels,
        "nvidia_small_a",
        "1.0",
        package=False,
        files={"nvidia/__init__.py": b"", "nvidia/small_a/x.py": b"A = 1\n"},
    )
    make_wheel(
        wheels,
        "nvidia_small_b",
        "1.0",
        package=False,
        files={"nvidia/__init__.py": small_b_init, "nvidia/small_b/x.py": b"B = 1\n"},
    )


def lock_and_build(root: Path, cache: Path) -> None:
    common = ["-f", str(root), "--cache-dir", str(cache)]
    assert main(["lock", *common]) == 0
    assert main(["build", *common, "--no-verify"]) == 0


def image_layers(root: Path, ref: str) -> list[dict[str, bytes]]:
    """Each layer of ``ref``: member name -> bytes (regular files), with duplicates detected."""
    store = Store.open(root / ".layerforge", create=False)
    desc = store.resolve(ref)
    assert desc is not None
    manifest = store.read_json(desc.digest)
    layers: list[dict[str, bytes]] = []
    for layer in manifest["layers"]:
        members: dict[str, bytes] = {}
        names: list[str] = []
        blob = store.read_bytes(layer["digest"])
        with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
            for info in tar:
                names.append(info.name)
                extracted = tar.extractfile(info) if info.isreg() else None
                if extracted is not None:
                    members[info.name] = extracted.read()
        assert len(names) == len(set(names)), f"duplicate members in {layer['digest']}"
        layers.append(members)
    return layers


def holders(layers: list[dict[str, bytes]], path: str) -> list[bytes]:
    return [layer[path] for layer in layers if path in layer]


def test_namespace_file_with_the_same_bytes_is_one_entry_in_own_and_shared_layers(
    tmp_path: Path,
) -> None:
    proj = tmp_path / "proj"
    write_project(proj, "nvidia-big", "nvidia-small-a", "nvidia-small-b")
    nvidia_family(proj / "wheels")
    lock_and_build(proj, tmp_path / "cache")
    layers = image_layers(proj, "svc:latest")
    init = f"{SITE}/nvidia/__init__.py"
    own = [layer for layer in layers if f"{SITE}/nvidia/big/lib.so" in layer]
    rest = [layer for layer in layers if f"{SITE}/nvidia/small_a/x.py" in layer]
    assert len(own) == 1 and len(rest) == 1 and own != rest
    assert own[0][init] == b"" and rest[0][init] == b""
    assert f"{SITE}/nvidia/small_b/x.py" in rest[0]


def test_bin_script_of_the_same_name_with_the_same_bytes(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    write_project(proj, "tool-one", "tool-two")
    script = "#!python\necho tool\n"
    make_wheel(proj / "wheels", "tool_one", "1.0", data_scripts={"tool": script})
    make_wheel(proj / "wheels", "tool_two", "1.0", data_scripts={"tool": script})
    lock_and_build(proj, tmp_path / "cache")
    (tool,) = holders(image_layers(proj, "svc:latest"), "opt/venv/bin/tool")
    assert tool.endswith(b"echo tool\n")
    # wheels from find_links: uv records in their dist-info when it cached them, which
    # must not reach the layer (a regression: every cold build had another digest)
    assert len(cold_digests(proj, tmp_path, 2)) == 1
    assert not [m for layer in image_layers(proj, "svc:latest") for m in layer if "uv_cache" in m]


def cold_digests(source: Path, tmp_path: Path, runs: int) -> set[str]:
    """The service's manifest digest after ``runs`` cold builds of the same lock, each in a
    fresh store and a fresh cache directory."""
    digests = set()
    for i in range(runs):
        target = tmp_path / f"cold{i}"
        shutil.copytree(source, target, ignore=shutil.ignore_patterns(".layerforge"))
        common = ["-f", str(target), "--cache-dir", str(tmp_path / f"cache{i}")]
        assert main(["build", *common, "--no-verify"]) == 0
        store = Store.open(target / ".layerforge", create=False)
        desc = store.resolve("svc:latest")
        assert desc is not None
        digests.add(desc.digest)
    return digests


def test_different_bytes_give_one_deterministic_winner_in_every_layer(tmp_path: Path) -> None:
    """nvidia-small-b's namespace file differs; with no dependency between the three, the
    last by name wins: every layer holding the path holds small-b's bytes, and cold builds
    agree to the digest (uv installs in parallel, so its own winner is a race)."""
    proj = tmp_path / "proj"
    write_project(proj, "nvidia-big", "nvidia-small-a", "nvidia-small-b")
    nvidia_family(proj / "wheels", small_b_init=b"# small-b\n")
    lock_and_build(proj, tmp_path / "cache")
    init = f"{SITE}/nvidia/__init__.py"
    assert holders(image_layers(proj, "svc:latest"), init) == [b"# small-b\n"] * 2
    assert len(cold_digests(proj, tmp_path, 4)) == 1


def test_a_dependent_overwrites_its_dependency(tmp_path: Path) -> None:
    """aa-libs-cu13 requires zz-libs-base and both ship the same path: the dependent is
    installed later, so it wins although its name sorts first (nvidia-cutlass-dsl's shape)."""
    proj = tmp_path / "proj"
    write_project(proj, "aa-libs-cu13")
    wheels = proj / "wheels"
    files = {"libs/version.txt": b"base\n"}
    make_wheel(wheels, "zz_libs_base", "1.0", files=files)
    make_wheel(
        wheels,
        "aa_libs_cu13",
        "1.0",
        requires=("zz-libs-base",),
        files={"libs/version.txt": b"cu13\n"},
    )
    lock_and_build(proj, tmp_path / "cache")
    path = f"{SITE}/libs/version.txt"
    assert holders(image_layers(proj, "svc:latest"), path) == [b"cu13\n"]
    assert len(cold_digests(proj, tmp_path, 3)) == 1


def test_bin_scripts_that_differ_have_a_deterministic_winner(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    write_project(proj, "tool-one", "tool-two")
    make_wheel(proj / "wheels", "tool_one", "1.0", data_scripts={"tool": "#!python\necho one\n"})
    make_wheel(proj / "wheels", "tool_two", "1.0", data_scripts={"tool": "#!python\necho two\n"})
    lock_and_build(proj, tmp_path / "cache")
    (tool,) = holders(image_layers(proj, "svc:latest"), "opt/venv/bin/tool")
    assert tool.endswith(b"echo two\n")
    assert len(cold_digests(proj, tmp_path, 4)) == 1
