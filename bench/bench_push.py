"""Benchmark: push the torch service image to a local `distribution` registry.

Scenarios (each a fresh `layerforge` process, timed from the outside, peak RSS of that
process alone):
  first push           empty registry, every blob uploaded
  no-op push           everything already there (HEADs only)
  code change          one line of the service changed: `build --push` (rebuild + push)
Beside it, `skopeo copy oci:STORE:svc:latest docker://...` of the same image into an empty
registry (the daemonless equivalent of `buildah push`). Each scenario runs --repeat times.

    .venv/bin/python bench/bench_push.py [--wheel-dir /opt/wheels] [--small]

``--small`` pushes the example fleet's `api` service instead (no torch, a ~100 MB image).
``--big 3`` pushes one 3 GB layer instead and reports the pushing process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench_build import compile_layerforge, write_project  # noqa: E402  (bench/ is sys.path[0])
from tests.integration.registry_server import Registry  # noqa: E402

from layerforge.sizes import format_size  # noqa: E402

LAYERFORGE = [sys.executable, "-m", "layerforge"]


def run_lf(root: Path, *args: str) -> tuple[float, float, dict[str, Any]]:
    """Wall seconds, peak RSS (MB) of the layerforge process (os.wait4), its --json doc."""
    argv = [*LAYERFORGE, *args, "-f", str(root), "--json"]
    with tempfile.TemporaryFile("w+") as out_file, tempfile.TemporaryFile("w+") as err_file:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out_file, stderr=err_file, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out_file.seek(0)
        err_file.seek(0)
        out, err = out_file.read(), err_file.read()
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed:\n{out}\n{err[-3000:]}")
    return wall, usage.ru_maxrss / 1024, json.loads(out)


def set_registry(root: Path, registry: str) -> None:
    manifest = root / "layerforge.toml"
    lines = [x for x in manifest.read_text().splitlines() if not x.startswith("registry = ")]
    text = "\n".join(lines) + "\n"
    manifest.write_text(text.replace("[project]\n", f'[project]\nregistry = "{registry}"\n', 1))


def uploaded(doc: dict[str, Any]) -> int:
    push = doc.get("push", doc)
    return sum(int(img["uploaded_bytes"]) for img in push["images"])


def skopeo_copy(store: Path, ref: str, target: str) -> float:
    start = time.perf_counter()
    subprocess.run(
        ["skopeo", "copy", "--dest-tls-verify=false", f"oci:{store}:{ref}", f"docker://{target}"],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - start


def skopeo_fresh(directory: Path, store: Path, node: str) -> float:
    """skopeo copy into a registry of its own (skopeo would otherwise mount known blobs)."""
    registry = Registry(directory)
    try:
        return skopeo_copy(store, f"{node}:latest", f"{registry.host}/skopeo/{node}:latest")
    finally:
        registry.stop()


def measure(root: Path, *args: str) -> tuple[float, float, int]:
    wall, peak, doc = run_lf(root, *args)
    return wall, peak, uploaded(doc)


def image_size(store: Path, ref: str) -> int:
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", f"oci:{store}:{ref}"], capture_output=True, check=True
    ).stdout
    return sum(int(x["size"]) for x in json.loads(raw)["layers"])


def prepare(work: Path, small: bool, wheels: Path) -> tuple[Path, str, Path]:
    """(project root, service node, the file to touch for a code change)."""
    root = work / "proj"
    if small:
        shutil.copytree(REPO / "examples/fleet", root, ignore=shutil.ignore_patterns(".layerforge"))
        return root, "api", root / "services/api/api/main.py"
    write_project(root, wheels)
    return root, "svc", root / "svc/svc/__main__.py"


def big_store(directory: Path, gigabytes: float) -> str:
    """A store holding one image with a single incompressible layer of that size."""
    from layerforge.oci.layout import Descriptor, Store, canonical_json
    from layerforge.oci.media import OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST

    store = Store.open(directory)
    left = int(gigabytes * 1e9)
    with store.ingest() as writer:
        while left > 0:
            chunk = os.urandom(min(left, 8 << 20))
            writer.write(chunk)
            left -= len(chunk)
        size = writer.size
        layer = writer.commit()
    config = canonical_json({"architecture": "amd64", "os": "linux", "rootfs": {"diff_ids": []}})
    manifest = canonical_json({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": store.put_bytes(config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": layer, "size": size}],
    })  # fmt: skip
    digest = store.put_bytes(manifest)
    store.tag("big", Descriptor(OCI_MANIFEST, digest, len(manifest)))
    return digest


def big_child(store_dir: str, host: str) -> None:
    """Push the big image with the library (run in a child process to measure its RSS)."""
    from layerforge.oci.layout import Store
    from layerforge.oci.push import PushSession, push_image
    from layerforge.oci.registry import Client

    store = Store.open(Path(store_dir), create=False)
    desc = store.resolve("big")
    assert desc is not None
    with Client(host) as client:
        push_image(PushSession(client, host), store, desc, "big/layer", ["latest"])


def big_push(work: Path, gigabytes: float) -> None:
    big_store(work / "big", gigabytes)
    registry = Registry(work / "big-registry")
    try:
        argv = [sys.executable, __file__, "--big-child", str(work / "big"), registry.host]
        start = time.perf_counter()
        proc = subprocess.Popen(argv)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status):
            sys.exit("the big push failed")
        print(
            f"push of one {gigabytes:g} GB layer: {wall:.2f} s "
            f"({gigabytes * 1e3 / wall:.0f} MB/s), peak RSS {usage.ru_maxrss / 1024:.0f} MB"
        )
    finally:
        registry.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--wheel-dir", type=Path, default=Path("/opt/wheels"))
    parser.add_argument("--small", action="store_true", help="the example fleet's api instead")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each scenario")
    parser.add_argument("--big", type=float, default=0, help="also push one layer of N GB")
    parser.add_argument("--big-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.big_child:
        big_child(*args.big_child)
        return
    compile_layerforge()
    if args.big:
        work = Path(tempfile.mkdtemp(prefix="lf-bench-big-"))
        try:
            big_push(work, args.big)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return
    work = Path(tempfile.mkdtemp(prefix="lf-bench-push-"))
    registry = Registry(work / "registry")
    try:
        root, node, touched = prepare(work, args.small, args.wheel_dir)
        set_registry(root, f"{registry.host}/bench0")
        run_lf(root, "lock")
        run_lf(root, "build", node)
        rows: list[tuple[str, list[tuple[float, float, int]]]] = [
            ("first push", []),
            ("no-op push", []),
            ("code change: build --push", []),
        ]
        for i in range(args.repeat):
            set_registry(root, f"{registry.host}/bench{i + 1}")  # an empty repository
            rows[0][1].append(measure(root, "push", node))
            rows[1][1].append(measure(root, "push", node))
            touched.write_text(touched.read_text() + "# changed\n")
            rows[2][1].append(measure(root, "build", "--push", node))
        store = root / ".layerforge"
        copies = [skopeo_fresh(work / f"skopeo{i}", store, node) for i in range(args.repeat)]
        size = image_size(store, f"{node}:latest")
        print(f"image {node}: {size / 1e6:.0f} MB compressed layers; {args.repeat} runs each")
        print(f"{'scenario':28} {'best s':>7} {'median s':>9} {'peak RSS MB':>12} {'uploaded':>10}")
        for name, runs in rows:
            walls = sorted(r[0] for r in runs)
            peak = max(r[1] for r in runs)
            print(
                f"{name:28} {walls[0]:7.2f} {statistics.median(walls):9.2f} {peak:12.0f} "
                f"{format_size(runs[-1][2]):>10}"
            )
        print(
            f"{'skopeo copy (first push)':28} {min(copies):7.2f} {statistics.median(copies):9.2f}"
        )
        best_first = min(r[0] for r in rows[0][1])
        print(f"first push throughput (best): {size / 1e6 / best_first:.0f} MB/s")
    finally:
        registry.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
