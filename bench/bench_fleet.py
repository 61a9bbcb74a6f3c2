"""Benchmark: a three-tier fleet with real heavy packages, built as a team would build it.

    cpu  (Debian bookworm; numpy, fastapi, uvicorn, pydantic)       4 services
    ml   (+ scikit-learn, scipy, pandas, transformers, tokenizers)   4 services
    gpu  (+ torch, sentence-transformers)                           3 services

``--torch cuda`` takes torch 2.8.0 from PyPI with its CUDA libraries (nvidia-*, triton: about
5 GB installed, a few GB of downloads unless uv's cache holds them); ``--torch cpu`` (the
default) takes the CPU wheel in ``--wheel-dir`` (/opt/wheels), so nothing large is downloaded.
uv's cache should be warm (one warm-up build of the same fleet: ``--warm``).

Scenarios, each a fresh ``layerforge`` process timed from the outside:
  cold         lock, then build with an empty store and an empty cache directory (the
               debootstrap cache and uv's cache warm)
  no-op        nothing changed
  code         one line of a gpu-tier service changed
  mid-req      a small requirement (tabulate) added to the ml tier: lock, then build
  version      project.version 1.0.0 -> 1.0.1
For each: wall time, the build's own total and the sum of its phases (load, prepare, build:
what the timings attribute), the largest steps, peak growth of the filesystem used (sampled;
other processes on the machine count too), the store, the cache directory and its unpacked
root filesystems afterwards, and the peak RSS of the layerforge process.

The store and the cache directory of the run are deleted at the end (uv's cache is not).

    .venv/bin/python bench/bench_fleet.py [--torch cpu|cuda] [--work DIR] [--no-verify]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_build import LAYERFORGE, compile_layerforge  # bench/ is sys.path[0]

TIERS = {
    "cpu": ['"numpy>=2,<3"', '"fastapi"', '"uvicorn"', '"pydantic>=2"'],
    "ml": ['"scikit-learn"', '"scipy"', '"pandas"', '"transformers"', '"tokenizers"'],
    "gpu": ["{torch}", '"sentence-transformers"'],
}
VERIFY = {
    "cpu": "import numpy, fastapi, uvicorn",
    "ml": "import sklearn, scipy, pandas, transformers",
    "gpu": "import torch, sentence_transformers",
}
SERVICES = {"cpu": 4, "ml": 4, "gpu": 3}
MIN_FREE = 2_000_000_000  # bytes left free on the filesystem: below, the build is stopped
TORCH = {"cuda": '"torch==2.8.0"', "cpu": '"torch==2.13.0"'}


def write_fleet(root: Path, torch: str, wheels: Path, *, version: str, mid_extra: str) -> None:
    lines = ["[project]", 'name = "fleetbench"', 'python = "3.11"', f'version = "{version}"']
    lines.append('layer_threshold = "30MB"')
    if torch == "cpu":
        lines += [f'find_links = ["{wheels}"]', f'allow_outside = ["{wheels}"]']
    parent = None
    for tier, templates in TIERS.items():
        reqs = [r.format(torch=TORCH[torch]) for r in templates]
        if tier == "ml" and mid_extra:
            reqs.append(f'"{mid_extra}"')
        source = '{ debootstrap = "bookworm" }' if parent is None else f'"{parent}"'
        lines += ["", f"[bases.{tier}]", f"from = {source}"]
        lines += [f"requirements = [{', '.join(reqs)}]", f'verify = ["{VERIFY[tier]}"]']
        parent = tier
    for tier, count in SERVICES.items():
        for i in range(count):
            name = f"{tier}{i + 1}"
            package = root / "services" / name / name
            package.mkdir(parents=True, exist_ok=True)
            main = package / "__main__.py"
            if not main.exists():
                main.write_text(f"print({name!r})\n")
            lines += ["", f"[services.{name}]", f'base = "{tier}"']
            lines += [f'source = "services/{name}"', f'command = ["python", "-m", "{name}"]']
            lines += [f'verify = ["import {name}"]']
    (root / "layerforge.toml").write_text("\n".join(lines) + "\n")


@dataclass
class Run:
    wall: float
    rss_mb: float
    peak_growth: int  # bytes: the filesystem's peak used minus its used at the start
    doc: dict[str, Any]


def used_bytes(path: Path) -> int:
    usage = shutil.disk_usage(path)
    return usage.total - usage.free


def run_lf(root: Path, cache: Path, *args: str) -> Run:
    """One layerforge process: wall seconds, its peak RSS, the filesystem's peak growth
    while it ran, and its --json document (when it prints one)."""
    argv = [*LAYERFORGE, *args, "-f", str(root), "--cache-dir", str(cache), "--json"]
    start_used = used_bytes(root)
    peak = [start_used]
    done = threading.Event()

    children: list[subprocess.Popen[str]] = []

    def sample() -> None:
        while not done.wait(0.25):
            peak[0] = max(peak[0], used_bytes(root))
            if shutil.disk_usage(root).free < MIN_FREE and children:
                print(f"less than {gb(MIN_FREE)} free: stopping (the disk is shared)")
                children[0].terminate()

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    began = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(argv, stdout=out, stderr=err, text=True)
        children.append(child)
        _pid, status, usage = os.wait4(child.pid, 0)  # its own peak RSS, not the largest so far
        wall = time.perf_counter() - began
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    done.set()
    sampler.join()
    peak[0] = max(peak[0], used_bytes(root))
    if child.returncode != 0:
        sys.exit(
            f"{' '.join(argv)} failed ({child.returncode}):\n{stdout[-3000:]}\n{stderr[-3000:]}"
        )
    doc = json.loads(stdout) if stdout.strip().startswith("{") else {}
    return Run(wall, usage.ru_maxrss / 1024, peak[0] - start_used, doc)


def du(path: Path) -> int:
    if not path.exists():
        return 0
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=False)
    return int(out.stdout.split()[0]) if out.stdout else 0


def gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def describe(name: str, run: Run, root: Path, cache: Path, lock: Run | None = None) -> None:
    timings = run.doc.get("timings", {})
    phases = timings.get("phases", {})
    total = float(timings.get("total", 0.0))
    phase_sum = sum(float(v) for v in phases.values())
    steps = sorted(timings.get("steps", {}).items(), key=lambda kv: -float(kv[1]))
    others = {n: v.get("other", 0.0) for n, v in timings.get("nodes", {}).items()}
    worst = max(others.items(), key=lambda kv: float(kv[1]), default=("-", 0.0))
    unpacked = du(cache / "rootfs") + du(cache / "app") + du(cache / "layers") + du(cache / "roots")
    lock_part = f" (lock {lock.wall:.1f} s)" if lock is not None else ""
    print(f"== {name}: wall {run.wall:.1f} s{lock_part}, peak RSS {run.rss_mb:.0f} MB")
    cover = 100 * phase_sum / run.wall if run.wall else 0.0
    print(
        f"   build total {total:.1f} s; phases {phase_sum:.1f} s = {cover:.0f}% of the wall "
        f"({', '.join(f'{k} {float(v):.1f}' for k, v in phases.items())})"
    )
    print("   steps: " + ", ".join(f"{k} {float(v):.1f}" for k, v in steps[:8]))
    print(f"   largest per-node other: {worst[0]} {float(worst[1]):.2f} s")
    print(
        f"   disk: peak growth {gb(run.peak_growth)} (whole filesystem); after: store "
        f"{gb(du(root / '.layerforge'))}, cache {gb(du(cache))} (unpacked {gb(unpacked)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--torch", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--wheel-dir", type=Path, default=Path("/opt/wheels"))
    parser.add_argument("--work", type=Path, default=None, help="where the fleet is built")
    parser.add_argument("--warm", action="store_true", help="a warm-up build first (uv cache)")
    parser.add_argument("--no-verify", action="store_true")
    args = parser.parse_args()
    if args.torch == "cuda":
        print("--torch cuda: torch 2.8.0 and its CUDA libraries come from PyPI (GBs, once)")
    compile_layerforge()
    work = Path(tempfile.mkdtemp(prefix="lf-fleet-", dir=args.work))
    root, cache = work / "fleet", work / "cache"
    root.mkdir()
    extra = ["--no-verify"] if args.no_verify else []

    def fresh_cache() -> None:
        shutil.rmtree(cache, ignore_errors=True)
        cache.mkdir()
        shared = Path.home() / ".cache/layerforge/debootstrap"
        if shared.is_dir():
            (cache / "debootstrap").symlink_to(shared)

    def write(version: str = "1.0.0", mid_extra: str = "") -> None:
        write_fleet(root, args.torch, args.wheel_dir, version=version, mid_extra=mid_extra)

    try:
        write()
        fresh_cache()
        if args.warm:
            run_lf(root, cache, "lock")
            run_lf(root, cache, "build", "--no-verify")  # only uv's cache matters
            shutil.rmtree(root / ".layerforge")
            fresh_cache()
        print(f"fleet: 3 bases, {sum(SERVICES.values())} services, torch {args.torch}; {work}")
        lock = run_lf(root, cache, "lock")
        describe("cold build", run_lf(root, cache, "build", *extra), root, cache, lock)
        describe("no-op build", run_lf(root, cache, "build", *extra), root, cache)
        main_py = root / "services/gpu1/gpu1/__main__.py"
        main_py.write_text(main_py.read_text() + "# changed\n")
        describe("code change (gpu1)", run_lf(root, cache, "build", *extra), root, cache)
        write(mid_extra="tabulate")
        lock = run_lf(root, cache, "lock")
        describe("requirement added to ml", run_lf(root, cache, "build", *extra), root, cache, lock)
        write(version="1.0.1", mid_extra="tabulate")
        describe("version bump", run_lf(root, cache, "build", *extra), root, cache)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the store and the cache; never uv's


if __name__ == "__main__":
    main()
