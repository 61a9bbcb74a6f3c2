"""Benchmark: a GPU fleet from PyPI's real CUDA wheels, with DEFAULT settings.

The project (written into a scratch directory): a debootstrap bookworm base (the same packages
as bench_build.py, so the shared debootstrap cache under ~/.cache/layerforge hits), a `gpu`
base with torch (CUDA 12.8 build from PyPI, pulling 14 nvidia-* wheels and triton),
transformers and diffusers, all pinned so that runs are comparable, and one service. No
`layer_threshold` or any other override: CUDA torch used to fail with "layer member
'.../nvidia/__init__.py' appears twice" unless the threshold was lowered.

Scenarios (each a fresh `layerforge` process, timed from the outside; peak RSS of that process
and the children it waited for, i.e. uv, from os.wait4):
  warm-up      lock + build once, to fill uv's cache (~4 GB of wheels, ~7 GB unpacked;
               uv's cache is shared and never deleted). Timed and reported on its own: it is
               the first-download time when uv's cache was cold, a warm build otherwise.
  lock         `layerforge lock` without a lock file (uv's cache warm)
  cold build   empty store, empty cache directory (only the shared debootstrap cache linked)
  no-op        nothing changed
  code         one line of the service's source changed
  requirement  a small requirement (accelerate) added to the gpu base: lock, then build
  cold, --no-verify   empty store and cache again, no verification: what a CI job that only
               builds and pushes needs (verification unpacks the image into the cache dir)
Then every layer written by the cold build: its size, and its writing speed (tar + sha256 +
ISA-L gzip on a thread pool) beside one thread reading the same tar bytes, sha256-ing them
and ISA-L compressing them (the tar is decoded from the blob into a scratch file first; it
is then in the page cache, so the baseline reads from memory, like the build reading a
freshly filled uv cache).

Disk: during the warm-up build (a cold build: empty store and cache directory) and the
--no-verify cold build, a sampler thread walks the store and the cache directory every
--interval seconds and counts each inode once (a walk costs ~1 s of one core, so the other
scenarios run without it and their wall times are not disturbed). Files hard-linked from
outside (uv's cache: the build stages wheels with `--link-mode hardlink`) are counted apart
("uv-linked"): they cost no new disk here, but a CI job with an empty uv cache pays them in
uv's cache. Beside the peak: the estimate of layerforge's disk preflight (builder/disk.py),
which refuses a build whose estimate exceeds the free space. uv's cache directory is
measured with `du` before and after the warm-up.

    .venv/bin/python bench/bench_gpu.py [--json-out gpu.json] [--keep] [--skip-baseline]
        [--skip-disk-preflight] [--only verify|no-verify]

The scratch directory is under $TMPDIR and is deleted at the end unless --keep. It needs
~12 GB free beside uv's cache, but the preflight asks for ~22 GB (the estimate above);
--skip-disk-preflight builds anyway (a wrapper around `python -m layerforge` records the
estimate and, with that flag, does not refuse). A failed scenario is reported and the
scenarios that need it are skipped. The summary is printed and, with --json-out, written as
JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# `python -m layerforge`, with the disk preflight's estimate printed as one more JSON event
# line ("bench-estimate"), so that it can be set beside the measured peak; with
# --skip-disk-preflight (LF_BENCH_SKIP_PREFLIGHT=1) the build goes on whatever it says.
LAYERFORGE = [
    sys.executable,
    "-c",
    """
import json, os, sys
import layerforge.api as api
from layerforge.builder import disk
def preflight(plan, ctx):
    store, cache = disk.estimate(plan, ctx)
    data = {"store": store, "cache": cache}
    print(json.dumps({"event": "bench-estimate", "data": data}), file=sys.stderr, flush=True)
    return [] if os.environ.get("LF_BENCH_SKIP_PREFLIGHT") else disk.preflight(plan, ctx)
api.preflight = preflight
from layerforge.cli import main
sys.exit(main())
""",
]
TORCH = "torch==2.8.0"  # cu128 on PyPI's linux x86_64 wheels
PINS = [TORCH, "transformers==5.24.0", "diffusers==0.42.1"]
ADDED = "accelerate==1.15.0"  # the requirement-change scenario
OS_PACKAGES = ["python3-venv", "python3-pip"]  # as bench_build.py: the debootstrap cache hits

MANIFEST = """
[project]
name = "gpubench"
python = "3.11"

[bases.os]
from = {{ debootstrap = "bookworm", packages = {os_packages} }}

[bases.gpu]
from = "os"
requirements = {requirements}

[services.svc]
base = "gpu"
source = "svc"
command = ["python", "-m", "svc"]
"""

MAIN = "import diffusers, torch, transformers\nprint(torch.__version__, torch.version.cuda)\n"


def write_project(root: Path, extra: list[str] | None = None) -> None:
    (root / "svc/svc").mkdir(parents=True, exist_ok=True)
    (root / "svc/svc/__init__.py").write_text("")
    main = root / "svc/svc/__main__.py"
    if not main.exists():
        main.write_text(MAIN)
    text = MANIFEST.format(
        os_packages=json.dumps(OS_PACKAGES), requirements=json.dumps([*PINS, *(extra or [])])
    )
    (root / "layerforge.toml").write_text(text)


def cache_of(root: Path) -> Path:
    return root.parent / "cache"


def fresh(root: Path) -> None:
    """Empty store and cache directory; the shared debootstrap cache (keyed by its inputs)
    linked in, as bench_build.py does."""
    shutil.rmtree(root / ".layerforge", ignore_errors=True)
    cache = cache_of(root)
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True)
    shared = Path.home() / ".cache/layerforge/debootstrap"
    if shared.is_dir():
        (cache / "debootstrap").symlink_to(shared)


def compile_layerforge() -> None:
    """Byte-compile layerforge as an installed wheel is (see bench_build.py)."""
    import layerforge

    package = Path(layerforge.__file__).parent
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True)


# -- disk ------------------------------------------------------------------------------------


@dataclass
class DiskPeak:
    """The largest sample of one scenario, in bytes (allocated blocks)."""

    own: int = 0  # inodes with every link inside the store + cache directory
    linked: int = 0  # inodes also linked from outside (uv's cache)
    store: int = 0  # the store's part of ``own`` at the same sample


def inodes(top: Path) -> dict[tuple[int, int], tuple[int, int, int]]:
    """Every inode under ``top``: (allocated bytes, link count, links seen under ``top``)."""
    found: dict[tuple[int, int], tuple[int, int, int]] = {}
    stack = [str(top)]
    while stack:
        try:
            it = os.scandir(stack.pop())
        except OSError:  # removed while we walk: the build cleans up as it goes
            continue
        with it:
            for entry in it:
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                seen = found.get((st.st_dev, st.st_ino), (0, 0, 0))[2]
                found[st.st_dev, st.st_ino] = (st.st_blocks * 512, st.st_nlink, seen + 1)
    return found


def walk(store: Path, cache: Path) -> DiskPeak:
    """Disk used by the store and the cache directory, each inode once."""
    in_store, in_cache = inodes(store), inodes(cache)
    peak = DiskPeak()
    for ino in in_store.keys() | in_cache.keys():
        size, links, _ = in_store.get(ino) or in_cache[ino]
        seen = in_store.get(ino, (0, 0, 0))[2] + in_cache.get(ino, (0, 0, 0))[2]
        if links > seen:
            peak.linked += size
        else:
            peak.own += size
            peak.store += size if ino in in_store else 0
    return peak


class Sampler:
    """Samples the disk used by the store and the cache directory while a process runs."""

    def __init__(self, store: Path, cache: Path, interval: float) -> None:
        self.store, self.cache, self.interval = store, cache, interval
        self.peak = DiskPeak()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        now = walk(self.store, self.cache)
        if now.own > self.peak.own:
            self.peak.own, self.peak.store = now.own, now.store
        self.peak.linked = max(self.peak.linked, now.linked)

    def _run(self) -> None:
        while not self.stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> Sampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self._sample()  # the state it left


# -- running layerforge ----------------------------------------------------------------------


@dataclass
class Run:
    scenario: str
    wall: float
    rss_mb: float
    disk: DiskPeak | None  # None: not sampled
    doc: dict[str, Any] = field(repr=False)
    events: list[dict[str, Any]] = field(repr=False)
    error: str | None = None  # the error layerforge reported (exit code and message)

    @property
    def estimate(self) -> int | None:
        """The disk preflight's estimate (store + cache bytes), if the build made one."""
        found = [e["data"] for e in self.events if e.get("event") == "bench-estimate"]
        return sum(found[-1].values()) if found else None

    def image(self, node: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = next(
            (i for i in self.doc.get("images", []) if i["node"] == node), None
        )
        return found


HEADER = (
    f"{'scenario':32} {'wall s':>7} {'RSS MB':>7} {'layers':>6} {'written':>8}"
    f" {'disk peak':>9} {'store':>8} {'uv-linked':>9} {'estimate':>9}"
)


def gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def row(r: Run) -> str:
    if r.error:
        return f"{r.scenario:32} {r.wall:7.1f} {r.rss_mb:7.0f}  FAILED: {r.error}"
    svc = r.image("svc")
    layers = str(svc["layers"]) if svc else "-"
    written = gb(sum(x["compressed"] for x in layers_written(r.events))) if svc else "-"
    disk = f" {gb(r.disk.own):>9} {gb(r.disk.store):>8} {gb(r.disk.linked):>9}" if r.disk else ""
    estimate = f" {gb(r.estimate):>9}" if r.disk and r.estimate is not None else ""
    return f"{r.scenario:32} {r.wall:7.1f} {r.rss_mb:7.0f} {layers:>6} {written:>8}{disk}{estimate}"


def run_lf(root: Path, scenario: str, *args: str, interval: float | None = None) -> Run:
    """One `layerforge` process: wall seconds, peak RSS (os.wait4), disk peak when sampled
    (every ``interval`` seconds), its --json document and its events; printed at once."""
    argv = [*LAYERFORGE, *args, "-f", str(root), "--cache-dir", str(cache_of(root)), "--json"]
    sampler = Sampler(root / ".layerforge", cache_of(root), interval) if interval else None
    with (
        tempfile.TemporaryFile("w+") as out_file,
        tempfile.TemporaryFile("w+") as err_file,
        sampler or contextlib.nullcontext(),
    ):
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out_file, stderr=err_file, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out_file.seek(0)
        err_file.seek(0)
        out, err = out_file.read(), err_file.read()
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    doc = json.loads(out) if out.strip().startswith("{") else {}
    disk = sampler.peak if sampler else None
    run = Run(scenario, wall, usage.ru_maxrss / 1024, disk, doc, events)
    if proc.returncode != 0:
        errors = [e for e in events if e.get("event") == "error"]
        message = errors[-1]["message"] if errors else (err.strip().splitlines() or ["?"])[-1]
        run.error = f"exit {proc.returncode}: {message}"
    print(row(run), flush=True)
    return run


def layers_written(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The layers a build wrote: task, uncompressed bytes, compressed bytes, digest, seconds."""
    return [
        {"task": e["task"], **e["data"]}
        for e in events
        if e["event"] == "finish" and e["task"].startswith("layer:") and "digest" in e["data"]
    ]


# -- baseline --------------------------------------------------------------------------------


def baseline(store: Path, digest: str, scratch: Path) -> float:
    """Seconds for one thread to read the layer's tar bytes, sha256 them and ISA-L compress
    them (level 1, as the layer writer) while hashing the output, as the writer does."""
    from isal import isal_zlib

    from layerforge.oci.compress import open_layer

    tar = scratch / "layer.tar"
    try:
        with (
            open_layer(store / "blobs/sha256" / digest.split(":")[1]) as src,
            tar.open("wb") as dst,
        ):
            shutil.copyfileobj(src, dst, 1 << 20)
        start = time.perf_counter()
        digest_in, digest_out = hashlib.sha256(), hashlib.sha256()
        comp = isal_zlib.compressobj(1, isal_zlib.DEFLATED, 31)
        with tar.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest_in.update(chunk)
                digest_out.update(comp.compress(chunk))
        digest_out.update(comp.flush())
        return time.perf_counter() - start
    finally:
        tar.unlink(missing_ok=True)


# -- report ----------------------------------------------------------------------------------


def print_layers(rows: list[dict[str, Any]]) -> None:
    print(f"{'layer':44} {'tar MB':>8} {'gzip MB':>8} {'write s':>8} {'MB/s':>6}"
          f" {'base s':>7} {'MB/s':>6}")  # fmt: skip
    for layer in rows:
        mb = layer["bytes"] / 1e6
        base = layer.get("baseline_seconds")
        base_cols = f" {base:7.2f} {mb / base:6.0f}" if base else ""
        print(
            f"{layer['task']:44} {mb:8.0f} {layer['compressed'] / 1e6:8.0f}"
            f" {layer['seconds']:8.2f} {mb / max(layer['seconds'], 1e-9):6.0f}{base_cols}"
        )
    total = sum(r["bytes"] for r in rows) / 1e6
    seconds = sum(r["seconds"] for r in rows)
    print(f"{'all layers written':44} {total:8.0f} "
          f"{sum(r['compressed'] for r in rows) / 1e6:8.0f} {seconds:8.2f} {total / seconds:6.0f}",
          end="")  # fmt: skip
    if all("baseline_seconds" in r for r in rows):
        base = sum(r["baseline_seconds"] for r in rows)
        print(f" {base:7.2f} {total / base:6.0f}")
    else:
        print()


def uv_cache_bytes() -> int | None:
    """Size of uv's (shared) cache directory, with `du` (each inode once)."""
    uv = Path(sys.executable).parent / "uv"
    found = subprocess.run([uv, "cache", "dir"], capture_output=True, text=True, check=False)
    path = found.stdout.strip() or str(Path.home() / ".cache/uv")
    du = subprocess.run(["du", "-s", "-B1", path], capture_output=True, text=True, check=False)
    try:
        return int(du.stdout.split()[0])
    except (IndexError, ValueError):
        return None


def scenarios(root: Path, interval: float, runs: list[Run]) -> None:
    """Every scenario, in order (see the module docstring), appended to ``runs`` as they end;
    a failed build ends the scenarios that need it."""
    runs.append(run_lf(root, "warm-up lock", "lock"))
    runs.append(run_lf(root, "warm-up build = cold (sampled)", "build", interval=interval))
    fresh(root)
    (root / "layerforge.lock").unlink()
    runs.append(run_lf(root, "lock", "lock"))
    runs.append(run_lf(root, "cold build", "build"))
    if runs[-1].error:
        return
    runs.append(run_lf(root, "no-op build", "build"))
    main_py = root / "svc/svc/__main__.py"
    main_py.write_text(main_py.read_text() + "# changed\n")
    runs.append(run_lf(root, "code-change build", "build"))
    write_project(root, extra=[ADDED])
    runs.append(run_lf(root, "requirement added: lock", "lock"))
    runs.append(run_lf(root, "requirement added: build", "build"))


def report(runs: list[Run], rows: list[dict[str, Any]], uv: dict[str, int | None]) -> None:
    by_name = {r.scenario: r for r in runs if not r.error}
    cold = by_name.get("cold build") or by_name.get("warm-up build = cold (sampled)")
    svc, gpu = (cold.image("svc"), cold.image("gpu")) if cold else (None, None)
    if cold and svc and gpu:
        print(
            f"svc image ({cold.scenario}): {svc['layers']} layers, {gb(svc['size'])} compressed,"
            f" {gb(svc['uncompressed_size'])} uncompressed (gpu base: {gpu['layers']} layers)"
        )
        print(f"  inside: {json.dumps(cold.doc.get('timings', {}).get('nodes', {}))}")
    req = by_name.get("requirement added: build")
    if req:
        print(
            f"requirement added, layers written: {[r['task'] for r in layers_written(req.events)]}"
        )
    if rows:
        print_layers(rows)
    if uv["before_warmup"] is not None and uv.get("after_warmup") is not None:
        print(f"uv cache: {gb(uv['before_warmup'])} before the warm-up, "
              f"{gb(uv['after_warmup'] or 0)} after")  # fmt: skip


def layer_rows(runs: list[Run], store: Path, scratch: Path, skip: bool) -> list[dict[str, Any]]:
    """The layers of the cold build (else the warm-up), each with its baseline seconds."""
    by_name = {r.scenario: r for r in runs if not r.error}
    cold = by_name.get("cold build") or by_name.get("warm-up build = cold (sampled)")
    rows = layers_written(cold.events) if cold else []
    if not skip and store.is_dir():
        for layer in rows:
            if (store / "blobs/sha256" / layer["digest"].split(":")[1]).is_file():
                layer["baseline_seconds"] = baseline(store, layer["digest"], scratch)
    return rows


def summary(runs: list[Run], rows: list[dict[str, Any]], uv: dict[str, int | None]) -> str:
    doc = {
        "pins": PINS,
        "added": ADDED,
        "os_packages": OS_PACKAGES,
        "runs": [
            {
                "scenario": r.scenario,
                "wall_seconds": round(r.wall, 2),
                "peak_rss_mb": round(r.rss_mb),
                "error": r.error,
                "disk_peak": asdict(r.disk) if r.disk else None,
                "disk_estimate": r.estimate,
                "layers_written": layers_written(r.events),
                "images": r.doc.get("images", []),
                "timings": r.doc.get("timings"),
            }
            for r in runs
        ],
        "cold_layers": rows,
        "uv_cache_bytes": uv,
    }
    return json.dumps(doc, indent=2) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json-out", type=Path, help="also write the summary here (JSON)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument("--skip-baseline", action="store_true", help="no read+hash+compress pass")
    parser.add_argument("--interval", type=float, default=3.0, help="disk sampling seconds")
    parser.add_argument(
        "--skip-disk-preflight",
        action="store_true",
        help="build even where the disk preflight's estimate exceeds the free space",
    )
    parser.add_argument(
        "--only",
        choices=["verify", "no-verify"],
        help="run only the scenarios with verification (warm-up to requirement change, and "
        "the baseline), or only the cold --no-verify build (after its lock)",
    )
    args = parser.parse_args()
    if args.skip_disk_preflight:
        os.environ["LF_BENCH_SKIP_PREFLIGHT"] = "1"
    compile_layerforge()
    work = Path(tempfile.mkdtemp(prefix="lf-bench-gpu-"))
    root = work / "proj"
    write_project(root)
    runs: list[Run] = []
    rows: list[dict[str, Any]] = []
    uv: dict[str, int | None] = {"before_warmup": uv_cache_bytes()}
    print(f"GPU fleet: {', '.join(PINS)} on debootstrap bookworm, default settings")
    print(HEADER, flush=True)
    try:
        fresh(root)
        if args.only != "no-verify":
            scenarios(root, args.interval, runs)
            uv["after_warmup"] = uv_cache_bytes()
            rows = layer_rows(runs, root / ".layerforge", work, args.skip_baseline)
            fresh(root)
            write_project(root)  # the cold --no-verify build of the original project
        if args.only != "verify":
            runs.append(run_lf(root, "lock (original)", "lock"))
            runs.append(run_lf(root, "cold build --no-verify (sampled)", "build", "--no-verify",
                               interval=args.interval))  # fmt: skip
        report(runs, rows, uv)
    finally:
        if args.json_out:
            args.json_out.write_text(summary(runs, rows, uv))
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if any(r.error for r in runs):
        sys.exit("some scenarios failed (above)")


if __name__ == "__main__":
    main()
