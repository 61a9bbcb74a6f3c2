"""Issue 13 item 6: budgets and sharing figures a team can act on.

A small fleet on a real Debian root: a base with a run step (a system layer) and a wheel
from ``find_links`` holding 1 MiB of random bytes (the lock records no size for it), and
three services on it, each with a budget far below its size. One build names all three
breaches in one error; with ``--allow-oversize`` a build (and a no-op build) says so in one
line; and the report's naive figure is each service's own image, counted from the blobs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from layerforge import proc
from layerforge.cli import main
from tests.conftest import require_tools
from tests.integration.tiny import cli
from tests.integration.tools import skopeo_raw
from tests.wheelkit import make_wheel

pytestmark = pytest.mark.integration

SERVICES = ("alpha", "beta", "gamma")

MANIFEST = """
[project]
name = "budgets"
python = "3.11"
find_links = ["wheels"]

[bases.base]
from = {{ debootstrap = "bookworm" }}
network = false
run = ["head -c 300000 /dev/urandom > /etc/noise"]
requirements = ["bulky==1.0"]
{services}
"""

SERVICE = """
[services.{name}]
base = "base"
source = "{name}"
command = ["python", "-m", "{name}"]
max_size = "1KB"
"""


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, shared_cache: Path) -> Path:
    require_tools("debootstrap", "bwrap", "skopeo")
    root = tmp_path_factory.mktemp("budgets")
    cache = root / "cache"
    cache.mkdir()
    proc.run(["cp", "-al", str(shared_cache / "debootstrap"), str(cache / "debootstrap")])
    project = root / "fleet"
    make_wheel(project / "wheels", "bulky", "1.0", files={"bulky/blob.bin": os.urandom(1 << 20)})
    for name in SERVICES:
        (project / name / name).mkdir(parents=True)
        (project / name / name / "__main__.py").write_text(f"print({name!r})\n")
    services = "".join(SERVICE.format(name=name) for name in SERVICES)
    (project / "layerforge.toml").write_text(MANIFEST.format(services=services))
    assert main(["lock", "-f", str(project), "--cache-dir", str(cache)]) == 0
    return project


def _build(project: Path, *extra: str) -> tuple[int, str, str]:
    cache = project.parent / "cache"
    return cli("build", "-f", str(project), "--cache-dir", str(cache), "--no-verify", *extra)


def test_every_image_over_budget_named_in_one_error(fleet: Path) -> None:
    code, _out, err = _build(fleet)
    assert code == 1, err
    assert "3 images exceed their size budget" in err, err
    for name in SERVICES:
        assert f"{name}: " in err and "over its max_size of 1 kB" in err
    index = json.loads((fleet / ".layerforge/index.json").read_text())
    tagged = {m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]}
    assert not {t for t in tagged if t.split(":")[0] in SERVICES}  # none of them tagged
    assert "Traceback" not in err


def test_allowed_oversize_says_so_in_one_line(fleet: Path) -> None:
    for _ in range(2):  # the build, then a no-op build
        code, _out, err = _build(fleet, "--allow-oversize", "--json")
        assert code == 0, err
        events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
        warnings = [e["message"] for e in events if e["event"] == "warning"]
        assert len(warnings) == 1, warnings
        assert warnings[0].startswith("3 images over their max_size"), warnings
        assert all(name in warnings[0] for name in SERVICES)


def test_naive_figure_is_the_sum_of_the_service_images(fleet: Path) -> None:
    code, _out, err = _build(fleet, "--allow-oversize")
    assert code == 0, err
    code, out, err = cli("report", "-f", str(fleet), "--json")
    assert code == 0, err
    naive = json.loads(out)["fleet"]["naive"]
    store = fleet / ".layerforge"
    own: dict[str, int] = {}
    for name in SERVICES:
        raw = skopeo_raw(store, f"{name}:latest")
        layers = sum(int(x["size"]) for x in raw["layers"])
        manifest = (store / "blobs/sha256" / _digest(store, name)[7:]).stat().st_size
        own[name] = layers + int(raw["config"]["size"]) + manifest
    assert naive["pull"] == own
    assert naive["pull_all"] == sum(own.values())


def _digest(store: Path, name: str) -> str:
    index = json.loads((store / "index.json").read_text())
    for m in index["manifests"]:
        if m["annotations"]["org.opencontainers.image.ref.name"] == f"{name}:latest":
            return str(m["digest"])
    raise AssertionError(f"no {name}:latest")
