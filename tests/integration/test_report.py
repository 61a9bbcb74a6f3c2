"""Reports, budgets, disk preflight and gc on real stores, checked with tools we did not write.

Figures are compared with sizes computed independently from the store's blobs; the HTML page
is opened in headless Chromium; gc'd stores are read back with skopeo.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from layerforge.cli import main
from layerforge.oci.layout import Descriptor, Store, canonical_json
from layerforge.oci.media import OCI_LAYER_GZIP, OCI_MANIFEST
from layerforge.records import records_dir
from layerforge.sizes import format_size
from tests.conftest import EXAMPLE, require_tools
from tests.integration.test_fleet import NODES
from tests.integration.tools import run, skopeo_inspect, skopeo_raw

pytestmark = pytest.mark.integration

SERVICES = ["api", "retrieval", "batch", "training"]


def cli(*args: str) -> tuple[int, str]:
    """Run the CLI in-process; (exit code, stdout)."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(list(args))
    return code, buf.getvalue()


def report_json(directory: Path, *extra: str) -> dict[str, Any]:
    code, out = cli("report", "-f", str(directory), "--json", *extra)
    assert code == 0, out
    doc: dict[str, Any] = json.loads(out)
    return doc


# -- independent figures: straight from index.json and the blob files ------------------------


def blobs_of(store: Path, ref: str) -> dict[str, int]:
    """digest -> file size of the manifest, config and layers a tag points at."""
    index = json.loads((store / "index.json").read_text())
    (entry,) = [
        m
        for m in index["manifests"]
        if m["annotations"]["org.opencontainers.image.ref.name"] == ref
    ]
    manifest = json.loads((store / "blobs/sha256" / entry["digest"][7:]).read_bytes())
    digests = [entry["digest"], manifest["config"]["digest"]]
    digests += [layer["digest"] for layer in manifest["layers"]]
    return {d: (store / "blobs/sha256" / d[7:]).stat().st_size for d in digests}


def union(store: Path, nodes: list[str]) -> int:
    blobs: dict[str, int] = {}
    for node in nodes:
        blobs.update(blobs_of(store, f"{node}:latest"))
    return sum(blobs.values())


def gunzipped_size(path: Path) -> int:
    total = 0
    with gzip.open(path, "rb") as fh:  # zlib, not the ISA-L the build used
        while chunk := fh.read(1 << 20):
            total += len(chunk)
    return total


def test_report_figures_match_the_blobs(fleet: Path) -> None:
    store = fleet / ".layerforge"
    doc = report_json(fleet)
    images = {i["node"]: i for i in doc["images"]}
    assert sorted(images) == sorted(NODES)
    tars: dict[str, int] = {}
    for node in NODES:
        blobs = blobs_of(store, f"{node}:latest")
        assert images[node]["size"] == sum(blobs.values()), node
        raw = skopeo_raw(store, f"{node}:latest")
        for layer in raw["layers"]:
            if layer["digest"] not in tars:
                tars[layer["digest"]] = gunzipped_size(store / "blobs/sha256" / layer["digest"][7:])
        uncompressed = sum(tars[x["digest"]] for x in raw["layers"])
        assert images[node]["uncompressed_size"] == uncompressed, node
        own = images[node]["own"]
        assert images[node]["inherited"] + own == sum(x["size"] for x in raw["layers"])
    fleet_doc = doc["fleet"]
    assert fleet_doc["stored"] == union(store, NODES)
    assert fleet_doc["pull_all"] == union(store, SERVICES)
    assert fleet_doc["pull"] == {s: sum(blobs_of(store, f"{s}:latest").values()) for s in SERVICES}
    # the naive layout: each service's own image, nothing shared
    assert fleet_doc["naive"]["pull"] == fleet_doc["pull"]
    assert fleet_doc["naive"]["pull_all"] == sum(fleet_doc["naive"]["pull"].values())
    assert fleet_doc["saving"]["pulled"] == fleet_doc["naive"]["pull_all"] - fleet_doc["pull_all"]
    assert fleet_doc["saving"]["pulled"] > fleet_doc["pull_all"]  # sharing more than halves it
    # what the layers hold: numpy is the largest distribution of cpu's dependency layers
    cpu_deps = [x for x in images["cpu"]["layers"] if x["kind"] == "deps"]
    assert cpu_deps[0]["holds"][0]["label"].startswith("numpy ")
    app = [x for x in images["api"]["layers"] if x["kind"] == "app"]
    assert [h["label"] for h in app[0]["holds"]] == ["app/api/main.py", "app/api/__init__.py"]
    assert {d["name"] for d in doc["largest_distributions"]} >= {"numpy", "scipy"}
    assert doc["budgets"] and not any(b["over"] for b in doc["budgets"])


def chromium(*args: str, user_dir: Path) -> str:
    argv = [
        "chromium",
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={user_dir}",
        *args,
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_html_report_renders_in_chromium(fleet: Path, tmp_path: Path) -> None:
    require_tools("chromium")
    page = tmp_path / "report.html"
    code, out = cli("report", "-f", str(fleet), "--html", str(page))
    assert code == 0, out
    html = page.read_text()
    assert "://" not in html and "<script" not in html  # self-contained: nothing to fetch
    shot = tmp_path / "report.png"
    chromium(
        "--window-size=1200,2200", f"--screenshot={shot}", page.as_uri(), user_dir=tmp_path / "u1"
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    dom = chromium("--dump-dom", page.as_uri(), user_dir=tmp_path / "u2")
    doc = report_json(fleet)
    for node in NODES:
        assert f">{node}<" in dom, node
    totals = doc["fleet"]
    for value in (totals["stored"], totals["pull_all"], totals["naive"]["pull_all"]):
        assert format_size(value) in dom
    assert "Layers per image" in dom and "Largest distributions" in dom


def test_build_reports_timings_per_node_and_step(fleet: Path) -> None:
    doc = json.loads((fleet / "build.json").read_text())  # the fixture's `build --json`
    timings = doc["timings"]
    assert list(timings["nodes"]) == NODES or set(timings["nodes"]) == set(NODES)
    cpu = timings["nodes"]["cpu"]
    assert cpu["seconds"] > 0 and {"install", "compress"} <= set(cpu["steps"])
    assert sum(cpu["steps"].values()) <= cpu["seconds"] + 0.01
    # its application layer, its image, then its verify checks in the image (unpacked)
    assert set(timings["nodes"]["api"]["steps"]) == {"compress", "image", "unpack", "verify"}
    assert timings["total"] >= max(n["seconds"] for n in timings["nodes"].values())


def test_budget_breach_fails_build_and_check(
    fleet: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The fleet's own manifest, with tiny budgets, against the fleet's store."""
    project = tmp_path / "tight"
    shutil.copytree(fleet, project, ignore=shutil.ignore_patterns(".layerforge", "build.json"))
    text = (project / "layerforge.toml").read_text()
    text = text.replace('max_size = "400MB"', 'max_size = "1MB"')
    gpu_requirements = 'requirements = ["safetensors", "tokenizers"]'
    text = text.replace(gpu_requirements, gpu_requirements + '\nmax_size = "2MB"')
    (project / "layerforge.toml").write_text(text)
    store = fleet / ".layerforge"
    index = (store / "index.json").read_bytes()
    common = ("-f", str(project), "--store", str(store))

    assert main(["report", *common, "--check"]) == 1
    doc = json.loads(cli("report", *common, "--json")[1])
    assert {b["node"] for b in doc["budgets"] if b["over"]} == {"cpu", "gpu"}
    assert cli("report", "-f", str(fleet), "--check")[0] == 0  # the real budgets hold

    # the size the message names, from the blobs: the sum of cpu's layer tars
    layers = skopeo_raw(store, "cpu:latest")["layers"]
    size = sum(gunzipped_size(store / "blobs/sha256" / x["digest"][7:]) for x in layers)
    breach = (
        f"cpu: {format_size(size)} uncompressed, over its max_size of 1 MB by "
        f"{format_size(size - 1_000_000)}"
    )
    capsys.readouterr()
    assert main(["build", *common, "cpu"]) == 1
    assert breach in capsys.readouterr().err
    assert (store / "index.json").read_bytes() == index  # nothing tagged
    assert main(["build", *common, "--allow-oversize", "cpu"]) == 0
    out = capsys.readouterr()
    assert "over its max_size" in out.err  # a warning, not an error
    assert "timings (seconds)" in out.out and "cpu:latest" in out.out


def test_budget_breach_fails_a_fresh_build_before_tagging(
    tmp_path: Path, shared_cache: Path
) -> None:
    require_tools("debootstrap")
    project = tmp_path / "small"
    project.mkdir()
    (project / "layerforge.toml").write_text(
        '[project]\nname = "small"\npython = "3.11"\n\n'
        '[bases.os]\nfrom = { debootstrap = "bookworm" }\nmax_size = "10MB"\n'
    )
    assert main(["lock", "-f", str(project), "--cache-dir", str(shared_cache)]) == 0
    code = main(["build", "-f", str(project), "--cache-dir", str(shared_cache)])
    assert code == 1
    store = Store.open(project / ".layerforge", create=False)
    assert store.tags() == {}
    assert main(["report", "-f", str(project), "--check"]) == 0  # nothing built, nothing over


# A build refused for lack of space, on a real 20 MB filesystem: a tmpfs mounted in a private
# mount namespace (root: `unshare --mount`; any other user: a user namespace that maps them to
# root), so that nothing is mounted on the host and no privilege is needed beyond that.
REFUSE_SCRIPT = """
set -e
mount -t tmpfs -o size=20m tmpfs "$MOUNTPOINT"
set +e
"$PYTHON" -m layerforge build -f "$PROJECT" --store "$MOUNTPOINT/store" --cache-dir "$CACHE" \\
  >"$OUT/stdout" 2>"$OUT/stderr"
echo $? >"$OUT/code"
"$PYTHON" -c 'import shutil, sys; print(shutil.disk_usage(sys.argv[1]).free)' "$MOUNTPOINT" \\
  >"$OUT/free"
ls -A "$MOUNTPOINT/store/blobs/sha256" >"$OUT/blobs" 2>&1
exit 0
"""


def in_private_tmpfs(mountpoint: Path, out: Path, project: Path, cache: Path) -> None:
    require_tools("unshare", "mount")
    namespaces = ["--mount"] if os.geteuid() == 0 else ["--user", "--map-root-user", "--mount"]
    env = {**os.environ, "MOUNTPOINT": str(mountpoint), "OUT": str(out),
           "PROJECT": str(project), "CACHE": str(cache), "PYTHON": sys.executable}  # fmt: skip
    proc = subprocess.run(
        ["unshare", *namespaces, "sh", "-c", REFUSE_SCRIPT],
        env=env, capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, (
        f"cannot mount a 20 MB tmpfs in a private mount namespace (unshare {' '.join(namespaces)})"
        f": {proc.stderr.strip()}; this test needs root or unprivileged user namespaces"
    )


def test_disk_preflight_refuses_before_writing(tmp_path: Path, shared_cache: Path) -> None:
    project = tmp_path / "fleet"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns(".layerforge"))
    mountpoint, out = tmp_path / "tmpfs", tmp_path / "out"
    mountpoint.mkdir()
    out.mkdir()
    in_private_tmpfs(mountpoint, out, project, shared_cache)
    err = (out / "stderr").read_text()
    assert int((out / "code").read_text()) == 1, err
    assert "Traceback" not in err
    message = " ".join(err.split())
    assert "not enough disk space" in message, err
    free = format_size(int((out / "free").read_text()))
    assert f"on the filesystem of {mountpoint}" in message and f"{free} free" in message
    assert "needs about" in message
    assert (out / "blobs").read_text() == ""  # refused before any blob
    assert not list(mountpoint.iterdir())  # and nothing was mounted here on the host


def _orphan_image(store: Store, config_digest: str, config_size: int) -> tuple[str, set[str]]:
    """An older api build nobody needs any more: its own layer, the current config."""
    layer = store.put_bytes(b"an old application layer " * 100)
    manifest = canonical_json({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": layer, "size": 2500}],
    })  # fmt: skip
    digest = store.put_bytes(manifest)
    ref = "api:lf-000000000000"
    store.tag(ref, Descriptor(OCI_MANIFEST, digest, len(manifest)))
    record = records_dir(store.root) / "000000000000.json"
    record.write_text("{}")
    os.utime(record, (1, 1))  # the oldest build
    return ref, {layer, digest}


def test_gc_removes_exactly_the_unreachable_blobs(fleet: Path, tmp_path: Path) -> None:
    require_tools("skopeo")
    project = tmp_path / "copy"
    shutil.copytree(fleet, project, ignore=shutil.ignore_patterns(".layerforge"))
    shutil.copytree(fleet / ".layerforge", project / ".layerforge", copy_function=os.link)
    store = Store.open(project / ".layerforge", create=False)
    before = store.blobs()
    api = json.loads(store.read_bytes(store.tags()["api:latest"].digest))
    ref, old = _orphan_image(store, api["config"]["digest"], api["config"]["size"])
    strays = {store.put_bytes(b"stray %d" % i) for i in range(3)}

    cache = str(tmp_path / "cache")  # never the shared cache: gc would clean it
    code, out = cli("gc", "-f", str(project), "--cache-dir", cache, "--dry-run", "--json")
    assert code == 0
    assert store.blobs() == before | old | strays  # dry run: nothing removed
    assert {r["digest"] for r in json.loads(out)["removed"]} == strays

    code, out = cli("gc", "-f", str(project), "--cache-dir", cache, "--keep", "1", "--json")
    assert code == 0, out
    doc = json.loads(out)
    assert doc["untagged"] == [ref]
    assert {r["digest"] for r in doc["removed"]} == old | strays
    assert doc["freed"] == sum(r["size"] for r in doc["removed"])
    assert store.blobs() == before
    for tag in [t for t in store.tags() if ":sha256-" not in t]:  # images, not their SBOMs
        info = skopeo_inspect(store.root, tag)
        assert info["Os"] == "linux"
        for layer in skopeo_raw(store.root, tag)["layers"]:
            store.read_bytes(layer["digest"])  # present and matching its digest
    run(["skopeo", "copy", f"oci:{store.root}:api:latest", f"dir:{tmp_path / 'api-dir'}"])
    assert cli("gc", "-f", str(project), "--cache-dir", cache)[0] == 0
    assert store.blobs() == before  # idempotent
