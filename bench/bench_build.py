"""Benchmark: build a service on a base holding the torch CPU wheel.

Scenarios (each a fresh `layerforge` process, timed from the outside):
  first        empty store and empty cache directory (unpacked root filesystems), but the
               debootstrap cache and uv's cache are warm (one warm-up run first)
  cold         empty store; the cache directory as the first build left it
  no-op        nothing changed
  code         one line of the service's source changed
  requirement  a small requirement added to the torch base (rebuilds base + service)
Then the torch layer's writing speed beside a single-threaded read + sha256 + ISA-L pass over
the same bytes, measured in this process, interleaved, best of 3, with the layer's files staged
once (the whole layer, and its files over 1 MiB alone: the shape of a CUDA layer), and
`buildah bud` of the equivalent Containerfile (pip install of the same wheels in a RUN step, on
the same Debian base), cold.

    .venv/bin/python bench/bench_build.py [--wheel-dir /opt/wheels] [--skip-buildah]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

LAYERFORGE = [sys.executable, "-m", "layerforge"]

MANIFEST = """
[project]
name = "bench"
python = "3.11"
find_links = ["{wheels}"]
allow_outside = ["{wheels}"]   # a wheelhouse outside the project (docs/manifest.md)

[bases.os]
from = {{ debootstrap = "bookworm", packages = ["python3-venv", "python3-pip"] }}

[bases.torch]
from = "os"
requirements = ["torch==2.13.0"{extra}]

[services.svc]
base = "torch"
source = "svc"
command = ["python", "-m", "svc"]
"""


def write_project(root: Path, wheels: Path, extra: str = "") -> None:
    (root / "svc/svc").mkdir(parents=True, exist_ok=True)
    (root / "svc/svc/__init__.py").write_text("")
    main = root / "svc/svc/__main__.py"
    if not main.exists():
        main.write_text("import torch\nprint(torch.ones(2).sum())\n")
    (root / "layerforge.toml").write_text(MANIFEST.format(wheels=wheels, extra=extra))


def cache_of(root: Path) -> Path:
    """A private cache directory (unpacked root filesystems, staging) for this run, so that
    nothing an earlier run left (e.g. the root filesystem the requirement change needs)
    makes a scenario look faster; the debootstrap cache (keyed by its inputs) is shared."""
    return root.parent / "cache"


def fresh_cache(root: Path) -> None:
    cache = cache_of(root)
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True)
    shared = Path.home() / ".cache/layerforge/debootstrap"
    if shared.is_dir():
        (cache / "debootstrap").symlink_to(shared)


def compile_layerforge() -> None:
    """Byte-compile layerforge as an installed wheel is: an editable install under
    PYTHONDONTWRITEBYTECODE would compile ~40 modules from source in every timed run."""
    import layerforge

    package = Path(layerforge.__file__).parent
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True)


def run_lf(root: Path, *args: str) -> tuple[float, float, list[dict[str, Any]]]:
    """Wall seconds, peak RSS (MB) of the child, and its JSON events."""
    argv = [*LAYERFORGE, *args, "-f", str(root), "--cache-dir", str(cache_of(root)), "--json"]
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed:\n{proc.stdout}\n{proc.stderr}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    events = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    return wall, peak, events


def torch_layer(events: list[dict[str, Any]]) -> dict[str, Any]:
    for event in events:
        if event["event"] == "finish" and event["task"].startswith("layer:torch:torch"):
            data: dict[str, Any] = event["data"]
            return data
    raise SystemExit("no torch layer was written")


def phases(events: list[dict[str, Any]]) -> str:
    """Where a build's time went, from the seconds its events carry (layers written,
    nodes built); verification and unpacking are the rest of each node's time."""
    parts = []
    for event in events:
        data = event.get("data") or {}
        if event["event"] == "finish" and "seconds" in data:
            parts.append(f"{event['task']} {data['seconds']:.2f}s")
        elif event["event"] == "finish" and str(event.get("message", "")).startswith("built in"):
            parts.append(f"{event['task']} {event['message']}")
    return "; ".join(parts)


def baseline(files: list[Path]) -> float:
    """Seconds for one thread to read these files, sha256 them and ISA-L compress them (level
    1, one gzip stream) and sha256 the output: the single-core work of writing a layer, minus
    the tar headers."""
    from isal import isal_zlib

    start = time.perf_counter()
    digest_in, digest_out = hashlib.sha256(), hashlib.sha256()
    comp = isal_zlib.compressobj(1, isal_zlib.DEFLATED, 31)
    for path in files:
        with path.open("rb", buffering=0) as fh:
            while chunk := fh.read(1 << 20):
                digest_in.update(chunk)
                digest_out.update(comp.compress(chunk))
    digest_out.update(comp.flush())
    return time.perf_counter() - start


class _Discard:
    def write(self, data: bytes) -> int:
        return len(data)


def writer_seconds(entries: list[Any]) -> float:
    """Seconds for layerforge's layer writer (tar, sha256 twice, parallel ISA-L) on them."""
    from layerforge.oci.write import write_layer

    start = time.perf_counter()
    write_layer(entries, _Discard(), threads=2)
    return time.perf_counter() - start


def write_ratio(store: Path, digest: str, rounds: int = 3) -> list[tuple[str, float, float, float]]:
    """(what, MB, baseline s, writer s) for the layer's files and for its files over 1 MiB:
    the layer is unpacked once, then baseline and writer run interleaved, best of ``rounds``."""
    from layerforge.oci.tarball import entries_from_tree
    from layerforge.oci.unpack import apply_layer

    tree = Path(tempfile.mkdtemp(prefix="lf-bench-layer-"))
    try:
        apply_layer(tree, store / "blobs/sha256" / digest.split(":")[1], "tar+gzip")
        entries = entries_from_tree(tree)
        files = [e for e in entries if e.kind == "file" and e.source is not None]
        big = [e for e in files if e.size > 1 << 20]
        rows = []
        for what, chosen in (("whole layer", entries), ("files > 1 MiB", big)):
            paths = [e.source for e in chosen if e.kind == "file" and e.source is not None]
            mb = sum(e.size for e in chosen if e.kind == "file") / 1e6
            base = write = float("inf")
            for _ in range(rounds):
                base = min(base, baseline(paths))
                write = min(write, writer_seconds(chosen))
            rows.append((what, mb, base, write))
        return rows
    finally:
        shutil.rmtree(tree, ignore_errors=True)


def download_wheels(lock: Path, target: Path) -> None:
    """The locked wheels of the torch base, for the buildah comparison."""
    import tomllib

    data = tomllib.loads(lock.read_text())
    pins = [f"{p['name']}=={p['version']}" for p in data["nodes"]["torch"]["packages"]]
    target.mkdir(parents=True, exist_ok=True)
    for wheel in Path("/opt/wheels").glob("torch-*.whl"):
        shutil.copy(wheel, target)
    pins = [p for p in pins if not p.startswith("torch==")]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            "3.11",
            "--platform",
            "manylinux_2_28_x86_64",
            "-d",
            str(target),
            *pins,
        ],
        check=True,
    )


def buildah_cold(root: Path, work: Path) -> float:
    env = {**os.environ, "STORAGE_DRIVER": "vfs", "BUILDAH_ISOLATION": "chroot"}
    ctx = work / "ctx"
    shutil.copytree(root / "svc", ctx / "svc")
    download_wheels(root / "layerforge.lock", ctx / "wheels")
    link = work / "store"
    link.symlink_to(root / ".layerforge")
    (ctx / "Containerfile").write_text(
        f"FROM oci:{link}:os:latest\n"
        "RUN python3 -m venv /opt/pipvenv\n"
        "COPY wheels /wheels\n"
        "RUN /opt/pipvenv/bin/pip install --no-cache-dir --no-index --find-links /wheels "
        "torch==2.13.0 && rm -rf /wheels\n"
        'COPY svc /app\nWORKDIR /app\nCMD ["/opt/pipvenv/bin/python", "-m", "svc"]\n'
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--wheel-dir", type=Path, default=Path("/opt/wheels"))
    parser.add_argument("--skip-buildah", action="store_true")
    args = parser.parse_args()
    compile_layerforge()
    work = Path(tempfile.mkdtemp(prefix="lf-bench-"))
    root = work / "proj"
    write_project(root, args.wheel_dir)
    rows: list[tuple[str, float, float]] = []
    try:
        fresh_cache(root)
        run_lf(root, "lock")
        run_lf(root, "build")  # warm uv's cache and the debootstrap cache
        shutil.rmtree(root / ".layerforge")
        fresh_cache(root)
        run_lf(root, "lock")
        wall, peak, _ = run_lf(root, "build")
        rows.append(("first build (empty store and cache)", wall, peak))
        shutil.rmtree(root / ".layerforge")
        run_lf(root, "lock")
        wall, peak, events = run_lf(root, "build")
        rows.append(("cold build (empty store)", wall, peak))
        layer, cold = torch_layer(events), phases(events)
        wall, peak, _ = run_lf(root, "build")
        rows.append(("no-op build", wall, peak))
        main_py = root / "svc/svc/__main__.py"
        main_py.write_text(main_py.read_text() + "# changed\n")
        wall, peak, _ = run_lf(root, "build")
        rows.append(("code-change rebuild", wall, peak))
        write_project(root, args.wheel_dir, extra=', "six"')
        run_lf(root, "lock")
        wall, peak, events = run_lf(root, "build")
        rows.append(("requirement-change rebuild", wall, peak))
        breakdown = phases(events)
        print(f"{'scenario':36} {'wall s':>8} {'peak RSS MB':>12}")
        for name, wall, peak in rows:
            print(f"{name:36} {wall:8.2f} {peak:12.0f}")
        print(f"  cold build, inside: {cold}")
        print(f"  requirement change, inside: {breakdown}")
        mb = layer["bytes"] / 1e6
        print(f"torch layer: {mb:.0f} MB uncompressed -> {layer['compressed'] / 1e6:.0f} MB gzip")
        print(
            f"  in the cold build (beside other work): {layer['seconds']:.2f} s "
            f"= {mb / layer['seconds']:.0f} MB/s"
        )
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"  layer writing against one core, same process, best of 3 (load average {load}):")
        for what, size, base, write in write_ratio(root / ".layerforge", layer["digest"]):
            print(
                f"    {what:14} {size:6.0f} MB: baseline read+sha256+ISA-L, 1 thread "
                f"{base:.2f} s = {size / base:.0f} MB/s; layerforge write (tar+sha256+ISA-L, "
                f"2 cores) {write:.2f} s = {size / write:.0f} MB/s; ratio {base / write:.2f}x"
            )
        if not args.skip_buildah and shutil.which("buildah"):
            seconds = buildah_cold(root, work / "buildah")
            print(f"{'buildah bud (cold, pip install)':36} {seconds:8.2f}")
            cold_wall = next(row[1] for row in rows if row[0].startswith("cold build"))
            print(f"cold-build speed-up over buildah: {seconds / cold_wall:.1f}x (wheels cached)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
