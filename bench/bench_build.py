"""Benchmark: build a service on a base holding the torch CPU wheel.

Scenarios (each a fresh `layerforge` process, timed from the outside):
  cold       - empty store; wheels already in uv's cache (one warm-up run first)
  no-op      - nothing changed
  code       - one line of the service's source changed
  requirement- a small requirement added to the base (rebuilds base + service)
Also: `buildah bud` of the equivalent Containerfile (pip install of the same wheels in a
RUN step, on the same debootstrap base), cold, for comparison.

    .venv/bin/python bench/bench_build.py [--wheel-dir /opt/wheels] [--skip-buildah]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LAYERFORGE = [sys.executable, "-m", "layerforge"]

MANIFEST = """
[project]
name = "bench"
python = "3.11"
find_links = ["{wheels}"]

[bases.torch]
from = {{ debootstrap = "bookworm" }}
requirements = ["torch==2.13.0"{extra}]

[services.svc]
base = "torch"
source = "svc"
command = ["python", "-m", "svc"]
"""


def write_project(root: Path, wheels: Path, extra: str = "") -> None:
    (root / "svc/svc").mkdir(parents=True, exist_ok=True)
    (root / "svc/svc/__init__.py").write_text("")
    (root / "svc/svc/__main__.py").write_text("import torch\nprint(torch.ones(2).sum())\n")
    (root / "layerforge.toml").write_text(MANIFEST.format(wheels=wheels, extra=extra))


def timed(args: list[str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of the child."""
    start = time.perf_counter()
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return wall, peak


def lf(root: Path, *args: str) -> list[str]:
    return [*LAYERFORGE, *args, "-f", str(root)]


def layer_stats(root: Path) -> tuple[int, float]:
    """Uncompressed bytes of the torch base's own layers and the time the build spent on them."""
    out = subprocess.run(
        lf(root, "build", "--json"), capture_output=True, text=True, check=True
    ).stdout
    images = {i["node"]: i for i in json.loads(out)["images"]}
    return int(images["torch"]["uncompressed_size"]), float(images["torch"]["seconds"])


def buildah_cold(root: Path, wheels: Path, store: Path) -> float | None:
    if shutil.which("buildah") is None:
        return None
    env = {**os.environ, "STORAGE_DRIVER": "vfs", "BUILDAH_ISOLATION": "chroot"}
    work = Path(tempfile.mkdtemp(prefix="lf-bench-buildah-"))
    try:
        ctx = work / "ctx"
        shutil.copytree(root / "svc", ctx / "svc")
        shutil.copytree(wheels, ctx / "wheels")
        (ctx / "Containerfile").write_text(
            f"FROM oci:{store}:torch-os\n"
            "RUN python3 -m venv /opt/venv\n"
            "COPY wheels /wheels\n"
            "RUN /opt/venv/bin/pip install --no-cache-dir --find-links /wheels torch==2.13.0\n"
            'COPY svc /app\nWORKDIR /app\nCMD ["/opt/venv/bin/python", "-m", "svc"]\n'
        )
        base = ["buildah", "--root", str(work / "r"), "--runroot", str(work / "rr")]
        start = time.perf_counter()
        subprocess.run(
            [*base, "bud", "--layers", "-t", "bench", str(ctx)],
            env=env,
            check=True,
            capture_output=True,
        )
        return time.perf_counter() - start
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--wheel-dir", type=Path, default=Path("/opt/wheels"))
    parser.add_argument("--skip-buildah", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lf-bench-"))
    root = work / "proj"
    write_project(root, args.wheel_dir)
    rows: list[tuple[str, float, float]] = []
    try:
        timed(lf(root, "lock"), root)
        timed(lf(root, "build"), root)  # warm uv's cache and the debootstrap cache
        shutil.rmtree(root / ".layerforge")
        timed(lf(root, "lock"), root)
        wall, peak = timed(lf(root, "build"), root)
        rows.append(("cold build (empty store)", wall, peak))
        wall, peak = timed(lf(root, "build"), root)
        rows.append(("no-op build", wall, peak))
        main_py = root / "svc/svc/__main__.py"
        main_py.write_text(main_py.read_text() + "# changed\n")
        wall, peak = timed(lf(root, "build"), root)
        rows.append(("code-change rebuild", wall, peak))
        write_project(root, args.wheel_dir, extra=', "six"')
        main_py.write_text(main_py.read_text() + "# changed\n")
        timed(lf(root, "lock"), root)
        wall, peak = timed(lf(root, "build"), root)
        rows.append(("requirement-change rebuild", wall, peak))
        print(f"{'scenario':32} {'wall s':>8} {'peak RSS MB':>12}")
        for name, wall, peak in rows:
            print(f"{name:32} {wall:8.2f} {peak:12.0f}")
        if not args.skip_buildah:
            seconds = buildah_cold(root, args.wheel_dir, root / ".layerforge")
            if seconds is not None:
                print(f"{'buildah bud (cold, pip install)':32} {seconds:8.2f}")
                print(f"speed-up of the cold build: {seconds / rows[0][1]:.1f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
