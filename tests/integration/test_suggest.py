"""Issue 15 item 2: ``layerforge suggest`` on a built fleet. A distribution below
layer_threshold that two services of one base both require is stored (and pulled, on a node
running both) twice, once in each service's shared layer; moving it up into the base stores
it once. suggest recommends that move, and its predicted bytes for the move match what
``report`` measures after the move is built (within 5%)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from layerforge.cli import main
from tests.wheelkit import make_wheel

pytestmark = pytest.mark.integration

MB = 1_000_000

MANIFEST = """\
[project]
name = "fleet"
python = "3.11"
find_links = ["wheels"]

[bases.base]
from = "rootfs:os"
requirements = [{base}]

[services.s1]
base = "base"
source = "src"
requirements = [{s1}]

[services.s2]
base = "base"
source = "src"
requirements = [{s2}]

[services.s3]
base = "base"
source = "src"
"""


def quoted(*names: str) -> str:
    return ", ".join(f'"{n}"' for n in names)


def write(root: Path, base: tuple[str, ...], s1: tuple[str, ...], s2: tuple[str, ...]) -> None:
    (root / "layerforge.toml").write_text(
        MANIFEST.format(base=quoted(*base), s1=quoted(*s1), s2=quoted(*s2))
    )


@pytest.fixture
def small_fleet(tmp_path: Path) -> Path:
    root = tmp_path / "fleet"
    (root / "os/usr/bin").mkdir(parents=True)
    (root / "os/usr/bin/python3.11").write_text("#!/bin/sh\n")
    (root / "os/etc").mkdir()
    (root / "os/etc/os-release").write_text("ID=test\n")
    (root / "src/app").mkdir(parents=True)
    (root / "src/app/__init__.py").write_text("")
    for name, size in (("xdist", 4 * MB), ("ydist", MB), ("zdist", MB)):  # incompressible
        make_wheel(root / "wheels", name, "1.0", files={f"{name}/blob.bin": os.urandom(size)})
    write(root, (), ("xdist", "ydist"), ("xdist", "zdist"))
    return root


def run(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    capsys.readouterr()
    code = main([*args, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err[-3000:]
    doc: dict[str, Any] = json.loads(out)
    return doc


def build(root: Path, cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for verb in (["lock"], ["build", "--no-verify"]):
        code = main([*verb, "-f", str(root), "--cache-dir", str(cache)])
        assert code == 0, capsys.readouterr().err[-3000:]


def test_suggest_recommends_moving_a_shared_small_package_up(
    small_fleet: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = small_fleet
    cache = tmp_path / "cache"
    build(fleet, cache, capsys)
    where = ["-f", str(fleet), "--cache-dir", str(cache)]
    doc = run(capsys, "suggest", *where, "--pool", "all=s1,s2,s3")
    by_name = {c["name"]: c for c in doc["candidates"]}
    today = by_name["today"]
    move = by_name["move xdist up to base (from s1, s2)"]
    assert doc["recommended"] == move["name"]
    assert move["name"] in doc["front"]
    assert today["stored"] - move["stored"] > 3.5 * MB  # xdist stored once, not twice
    assert today["pulled"]["all"] - move["pulled"]["all"] > 3.5 * MB
    assert [e["node"] for e in move["edits"]] == ["base", "s1", "s2"]

    # today's prediction is report's measurement
    report = run(capsys, "report", *where)
    assert today["stored"] == report["fleet"]["stored"]

    # s3 on a node of its own: it now pulls xdist, which it does not need, but the
    # recommendation stays (stored and the shared pool save more)
    alone = run(capsys, "suggest", *where, "--pool", "both=s1,s2")
    by_name = {c["name"]: c for c in alone["candidates"]}
    assert alone["recommended"] == move["name"]
    assert by_name[move["name"]]["pulled"]["s3"] - by_name["today"]["pulled"]["s3"] > 3.5 * MB

    # --write applies it (and locks again); build it, and compare: within 5% of report
    capsys.readouterr()
    assert main(["suggest", *where, "--pool", "all=s1,s2,s3", "--write"]) == 0
    assert '+requirements = ["xdist"]' in capsys.readouterr().out
    text = (fleet / "layerforge.toml").read_text()
    assert text.count('"xdist"') == 1 and 'requirements = ["ydist"]' in text
    code = main(["lock", "--check", *where])
    assert code == 0, capsys.readouterr().err
    build(fleet, cache, capsys)
    measured = run(capsys, "report", *where)["fleet"]
    assert abs(measured["stored"] - move["stored"]) <= 0.05 * measured["stored"]
    pulled_all = measured["pull_all"]  # the union of the three services: the pool "all"
    assert abs(pulled_all - move["pulled"]["all"]) <= 0.05 * pulled_all


UNIVERSAL = """\
[project]
name = "workers"
python = "3.11"
find_links = ["wheels"]

[bases.worker]
from = "rootfs:os"
requirements = ["heavy", "light"]

[services.gpu-worker]
base = "worker"
source = "gpu"
command = ["python", "-m", "gpu"]

[services.cpu-worker]
base = "worker"
source = "cpu"
command = ["python", "-m", "cpu"]
"""


def test_suggest_gives_each_worker_kind_only_what_it_imports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "workers"
    (root / "os/usr/bin").mkdir(parents=True)
    (root / "os/usr/bin/python3.11").write_text("#!/bin/sh\n")
    (root / "os/etc").mkdir()
    (root / "os/etc/os-release").write_text("ID=test\n")
    for kind, imports in (("gpu", "import heavy, light\n"), ("cpu", "import light\n")):
        (root / kind / kind).mkdir(parents=True)
        (root / kind / kind / "__main__.py").write_text(imports)
    make_wheel(root / "wheels", "heavy", "1.0", files={"heavy/model.bin": os.urandom(4 * MB)})
    make_wheel(root / "wheels", "light", "1.0")
    (root / "layerforge.toml").write_text(UNIVERSAL)
    cache = tmp_path / "cache"
    build(root, cache, capsys)
    doc = run(capsys, "suggest", "-f", str(root), "--cache-dir", str(cache), "--offline")
    by_name = {c["name"]: c for c in doc["candidates"]}
    down = by_name["move heavy down from worker to gpu-worker"]
    assert doc["recommended"] == down["name"]
    assert "move light down from worker to gpu-worker" not in by_name  # both import light
    today = by_name["today"]
    assert today["pulled"]["cpu-worker"] - down["pulled"]["cpu-worker"] > 3.5 * MB
    assert abs(today["pulled"]["gpu-worker"] - down["pulled"]["gpu-worker"]) < 0.1 * MB
    assert today["unused"] - down["unused"] > 3.5 * MB  # the cpu worker no longer ships it


def linked_copy(source: Path, target: Path) -> Path:
    """A copy of a built project whose store blobs are hard links (blobs never change, and
    every write to a store or a manifest is an atomic rename)."""
    shutil.copytree(source, target, copy_function=os.link)
    return target


@pytest.mark.parametrize("name", ["re-parent gpu onto cpu", "merge ml into cpu"])
def test_suggest_predictions_on_the_example_fleet_within_5_percent(
    fleet: Path, shared_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    root = linked_copy(fleet, tmp_path / "fleet")
    where = ["-f", str(root), "--cache-dir", str(shared_cache)]
    pools = ["--pool", "cpu=api,retrieval,batch", "--pool", "gpu=training"]
    doc = run(capsys, "suggest", *where, *pools, "--offline")
    assert doc["recommended"] == "re-parent gpu onto cpu"  # training needs no ml distribution
    predicted = next(c for c in doc["candidates"] if c["name"] == name)
    assert not predicted["estimated"]
    capsys.readouterr()
    code = main(["suggest", *where, *pools, "--offline", "--write", "--candidate", name])
    assert code == 0, capsys.readouterr().err[-2000:]
    code = main(["build", "--no-verify", *where])
    assert code == 0, capsys.readouterr().err[-3000:]
    measured = run(capsys, "report", *where)["fleet"]
    assert abs(measured["stored"] - predicted["stored"]) <= 0.05 * measured["stored"]
    training = measured["pull"]["training"]  # the gpu pool holds training only
    assert abs(training - predicted["pulled"]["gpu"]) <= 0.05 * training


SPLIT = """\
[project]
name = "workers"
python = "3.11"
find_links = ["wheels"]

[bases.worker]
from = "rootfs:os"
requirements = ["heavy", "light"]
"""


def test_suggest_splits_a_base_for_the_services_that_share_a_library(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "workers"
    (root / "os/usr/bin").mkdir(parents=True)
    (root / "os/usr/bin/python3.11").write_text("#!/bin/sh\n")
    (root / "os/etc").mkdir()
    (root / "os/etc/os-release").write_text("ID=test\n")
    text = SPLIT
    # each trainer has a small library of its own too, so their shared layers differ (two
    # identical shared layers would be one blob, and moving heavy down would cost nothing)
    for kind, imports in (
        ("traina", "heavy, tinya"),
        ("trainb", "heavy, tinyb"),
        ("serve", "light"),
    ):
        (root / kind / kind).mkdir(parents=True)
        (root / kind / kind / "__main__.py").write_text(f"import {imports}\n")
        own = {"traina": '"tinya"', "trainb": '"tinyb"', "serve": ""}[kind]
        text += f'\n[services.{kind}]\nbase = "worker"\nsource = "{kind}"\n'
        text += f'command = ["python", "-m", "{kind}"]\nrequirements = [{own}]\n'
    make_wheel(root / "wheels", "heavy", "1.0", files={"heavy/model.bin": os.urandom(4 * MB)})
    for name in ("light", "tinya", "tinyb"):
        make_wheel(root / "wheels", name, "1.0")
    (root / "layerforge.toml").write_text(text)
    cache = tmp_path / "cache"
    build(root, cache, capsys)
    where = ["-f", str(root), "--cache-dir", str(cache), "--offline"]
    doc = run(capsys, "suggest", *where)
    by_name = {c["name"]: c for c in doc["candidates"]}
    split = by_name["split worker: worker-traina-trainb for traina, trainb"]
    assert doc["recommended"] == split["name"]
    down = by_name["move heavy down from worker to traina, trainb"]
    assert down["stored"] - split["stored"] > 3.5 * MB  # heavy twice, in two small layers
    assert by_name["today"]["pulled"]["serve"] - split["pulled"]["serve"] > 3.5 * MB
    capsys.readouterr()
    assert main(["suggest", *where, "--write"]) == 0
    manifest = (root / "layerforge.toml").read_text()
    assert "[bases.worker-traina-trainb]" in manifest
    build(root, cache, capsys)
    measured = run(capsys, "report", "-f", str(root), "--cache-dir", str(cache))["fleet"]
    assert abs(measured["stored"] - split["stored"]) <= 0.05 * measured["stored"]
    for service in ("traina", "serve"):
        pulled = measured["pull"][service]
        assert abs(pulled - split["pulled"][service]) <= 0.05 * pulled
