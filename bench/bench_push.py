"""Benchmark: push the torch service image to a local `distribution` registry.

Scenarios (each a fresh `layerforge` process, timed from the outside, peak RSS of that
process alone):
  first push           empty registry, every blob uploaded
  no-op push           everything already there (HEADs only)
  code change          one line of the service changed: `build --push` (rebuild + push)
Beside it, `skopeo copy oci:STORE:svc:latest docker://...` of the same image into an empty
repository (the daemonless equivalent of `buildah push`).

    .venv/bin/python bench/bench_push.py [--wheel-dir /opt/wheels] [--small]

``--small`` pushes the example fleet's `api` service instead (no torch, a ~100 MB image).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench_build import write_project  # noqa: E402  (bench/ is sys.path[0])
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
    text = manifest.read_text()
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


def prepare(work: Path, small: bool, wheels: Path) -> tuple[Path, str, Path]:
    """(project root, service node, the file to touch for a code change)."""
    root = work / "proj"
    if small:
        shutil.copytree(REPO / "examples/fleet", root, ignore=shutil.ignore_patterns(".layerforge"))
        return root, "api", root / "services/api/api/main.py"
    write_project(root, wheels)
    return root, "svc", root / "svc/svc/__main__.py"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--wheel-dir", type=Path, default=Path("/opt/wheels"))
    parser.add_argument("--small", action="store_true", help="the example fleet's api instead")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lf-bench-push-"))
    registry = Registry(work / "registry")
    try:
        root, node, touched = prepare(work, args.small, args.wheel_dir)
        set_registry(root, f"{registry.host}/bench")
        run_lf(root, "lock")
        run_lf(root, "build", node)
        rows: list[tuple[str, float, float, int]] = []
        wall, peak, doc = run_lf(root, "push", node)
        rows.append(("first push", wall, peak, uploaded(doc)))
        wall, peak, doc = run_lf(root, "push", node)
        rows.append(("no-op push", wall, peak, uploaded(doc)))
        touched.write_text(touched.read_text() + "# changed\n")
        wall, peak, doc = run_lf(root, "build", "--push", node)
        rows.append(("code change: build --push", wall, peak, uploaded(doc)))
        store = root / ".layerforge"
        size = sum(
            int(x["size"])
            for x in json.loads(
                subprocess.run(
                    ["skopeo", "inspect", "--raw", f"oci:{store}:{node}:latest"],
                    capture_output=True,
                    check=True,
                ).stdout
            )["layers"]
        )
        copy = skopeo_copy(store, f"{node}:latest", f"{registry.host}/skopeo/{node}:latest")
        print(f"image {node}: {size / 1e6:.0f} MB compressed layers")
        print(f"{'scenario':30} {'wall s':>8} {'peak RSS MB':>12} {'uploaded':>12}")
        for name, wall, peak, sent in rows:
            print(f"{name:30} {wall:8.2f} {peak:12.0f} {format_size(sent):>12}")
        print(f"{'skopeo copy (first push)':30} {copy:8.2f}")
        print(f"first push throughput: {size / 1e6 / rows[0][1]:.0f} MB/s")
    finally:
        registry.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
