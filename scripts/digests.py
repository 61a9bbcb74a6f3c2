"""Build the example fleet and the bench project into fresh stores; print node -> digests.

A refactor must not change what we write. Record before, compare after:

    .venv/bin/python scripts/digests.py > /tmp/before.json
    ... refactor ...
    .venv/bin/python scripts/digests.py --compare /tmp/before.json

Each project is copied to a temporary directory, locked there (the example fleet ships its lock;
the bench project is locked once and the lock reused, so a new release on the index between two
runs does not read as a change of ours) and built with a fresh store and a fresh cache directory
(only the debootstrap area is shared with the user cache, through a symlink, to save 35 s
per project). The
output holds each node's content key and manifest digest. Not a CI test: the system layers come
from Debian's archive, which moves under any recorded digest.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERFORGE = [sys.executable, "-m", "layerforge"]
USER_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "layerforge"
BENCH_LOCK = ROOT / "docs/dev/digests-bench.lock"


def _run(argv: list[str], cwd: Path) -> str:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode:
        sys.exit(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc.stdout


def _fresh_cache(tmp: Path) -> Path:
    cache = tmp / "cache"
    cache.mkdir()
    seed = USER_CACHE / "debootstrap"
    if seed.is_dir():
        (cache / "debootstrap").symlink_to(seed)
    return cache


def _build(project: Path, tmp: Path) -> dict[str, dict[str, str]]:
    out = _run(
        [
            *LAYERFORGE,
            "build",
            "--json",
            "--store",
            str(tmp / "store"),
            "--cache-dir",
            str(_fresh_cache(tmp)),
        ],
        project,
    )
    return {
        image["node"]: {"key": image["key"], "manifest": image["manifest"]}
        for image in json.loads(out)["images"]
    }


def fleet(tmp: Path) -> dict[str, dict[str, str]]:
    project = tmp / "fleet"
    shutil.copytree(ROOT / "examples/fleet", project, ignore=shutil.ignore_patterns(".layerforge"))
    return _build(project, tmp)


def bench(tmp: Path, wheels: Path) -> dict[str, dict[str, str]]:
    sys.path.insert(0, str(ROOT / "bench"))
    import bench_build  # noqa: PLC0415 (bench/ is not a package)

    project = tmp / "bench"
    project.mkdir()
    bench_build.write_project(project, wheels)
    if BENCH_LOCK.exists():
        shutil.copy(BENCH_LOCK, project / "layerforge.lock")
    else:
        _run([*LAYERFORGE, "lock"], project)
        shutil.copy(project / "layerforge.lock", BENCH_LOCK)
    return _build(project, tmp)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", type=Path, help="a previous output: exit 1 on any change")
    parser.add_argument("--wheel-dir", type=Path, default=Path("/opt/wheels"))
    args = parser.parse_args()
    result: dict[str, dict[str, dict[str, str]]] = {}
    with tempfile.TemporaryDirectory(prefix="lf-digests-") as tmp:
        (Path(tmp) / "f").mkdir()
        (Path(tmp) / "b").mkdir()
        result["fleet"] = fleet(Path(tmp) / "f")
        result["bench"] = bench(Path(tmp) / "b", args.wheel_dir)
    print(json.dumps(result, indent=2, sort_keys=True))
    if args.compare:
        before = json.loads(args.compare.read_text())
        if before != result:
            for project in sorted(set(before) | set(result)):
                for node in sorted(set(before.get(project, {})) | set(result.get(project, {}))):
                    a = before.get(project, {}).get(node)
                    b = result.get(project, {}).get(node)
                    if a != b:
                        print(f"CHANGED {project}/{node}: {a} -> {b}", file=sys.stderr)
            sys.exit(1)
        print("digests unchanged", file=sys.stderr)


if __name__ == "__main__":
    main()
