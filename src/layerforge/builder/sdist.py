"""Locked source distributions built into wheels, once, in the sandbox.

A package the lock records with ``kind = "sdist"`` (no wheel exists for it, see
:func:`layerforge.lock.uv.run_compile`) is built here before the node's install:

- on the image the wheels land in (the parent chain, the venv and the node's system layer),
  so a C library a base's ``run`` step compiled is there to link against;
- with the ``build_system`` packages of the node and its ancestors installed again with apt
  (the system layer took them out), as root with the system steps' capabilities;
- by ``uv build --wheel`` (the host's uv binary, mounted read-only), with the network on: uv
  resolves the build dependencies (``[build-system] requires``) from the project's index
  and ``find_links`` in an isolated environment of the image's own Python. The build
  backend (code from the sdist) runs like ``verify``: root of a user namespace without any
  capability; the host's CA bundle (``SSL_CERT_FILE``), if set, is given to uv.

The wheel is kept in the cache directory under :data:`layerforge.cachedir.BUILT_WHEELS`,
keyed by the sdist's sha256, the Python, the platform, the chain of layers it was built on
and ``build_system``, and every later build with that key installs it without building. The
node's content key holds the sdist's sha256 (from the lock); the wheel is a function of the
key above. Wheel builds need not be bit-for-bit reproducible (``SOURCE_DATE_EPOCH`` is set):
the cache entry makes them stable per machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import stat
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from layerforge import cachedir, proc
from layerforge.errors import BuildError
from layerforge.events import Event, Reporter
from layerforge.fsutil import atomic_write, digest_json
from layerforge.lock.lockfile import Package
from layerforge.manifest import Node, Project
from layerforge.oci.layer import Layer
from layerforge.oci.layout import Store
from layerforge.sandbox import runner as runners
from layerforge.sandbox.system import cache_mounts, sandbox_env
from layerforge.sandbox.verify import chain_root

UV = "/usr/local/bin/layerforge-uv"
SRC = "/run/layerforge-sdist"
OUT = "/run/layerforge-wheel"
FIND_LINKS = "/run/layerforge-find-links"
CA_BUNDLE = "/run/layerforge-ca.pem"
PYTHON = "/opt/venv/bin/python"
OUTPUT_TAIL = 25
META = "wheel.json"


@dataclass(frozen=True)
class BuiltWheel:
    """A wheel built from a locked sdist, in the cache: install it in the sdist's place."""

    name: str
    path: Path
    sha256: str


@dataclass(frozen=True)
class SdistBuild:
    """Where and with what a node's sdists are built."""

    store: Store
    cache_dir: Path
    reporter: Reporter
    project: Project
    node: Node
    python: str
    platform: str
    below: tuple[Layer, ...]  # the image the wheels land in
    runner: str | None = None


def build_system_of(project: Project, node: Node) -> tuple[str, ...]:
    """The ``build_system`` packages of ``node`` and its ancestors (root first), once each."""
    out: list[str] = []
    for n in [*reversed(project.ancestors(node.name)), node]:
        out += [p for p in n.build_system if p not in out]
    return tuple(out)


def wheel_key(build: SdistBuild, package: Package) -> str:
    """The cache key of the wheel built from ``package`` on ``build``'s root."""
    doc = {
        "sdist": package.sha256,
        "python": build.python,
        "platform": build.platform,
        "chain": [x.descriptor.digest for x in build.below],
        "build_system": list(build_system_of(build.project, build.node)),
    }
    return digest_json(doc).removeprefix("sha256:")


def built_wheels(build: SdistBuild, packages: Sequence[Package]) -> dict[str, BuiltWheel]:
    """A wheel for every sdist in ``packages``, by name: from the cache, or built now."""
    out: dict[str, BuiltWheel] = {}
    for package in sorted(p for p in packages if p.kind == "sdist"):
        key = wheel_key(build, package)
        task = f"sdist:{build.node.name}:{package.name}"
        cached = cached_wheel(build.cache_dir, key, package)
        if cached is not None:
            build.reporter.emit(Event("info", task, f"{package.pin}: built wheel reused"))
        else:
            cached = _build(build, package, key, task)
        out[package.name] = cached
    return out


def cached_wheel(cache_dir: Path, key: str, package: Package) -> BuiltWheel | None:
    entry = cachedir.BUILT_WHEELS.path(cache_dir, key)
    try:
        meta = json.loads((entry / META).read_text())
        path = entry / str(meta["filename"])
        if meta.get("sdist") != package.sha256 or not path.is_file():
            return None
        return BuiltWheel(package.name, path, str(meta["sha256"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _build(build: SdistBuild, package: Package, key: str, task: str) -> BuiltWheel:
    stage = cachedir.STAGE.path(build.cache_dir)
    stage.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="sdist-", dir=stage))
    try:
        (work / "src").mkdir()
        (work / "out").mkdir()
        sdist = work / "src" / package.filename
        fetch(package, sdist)
        chain = [(x.descriptor.digest, x.descriptor.media_type) for x in build.below]
        lower = chain_root(build.store, chain, build.cache_dir)  # read-only: copied below
        proc.run(["cp", "-a", "--reflink=auto", str(lower), str(work / "rootfs")])
        build.reporter.emit(Event("start", task, f"building {package.filename}"))
        started = time.perf_counter()
        result = _run(build, package, work)
        seconds = round(time.perf_counter() - started, 3)
        ok = result.returncode == 0
        build.reporter.emit(Event("finish", task, data={"ok": ok, "seconds": seconds}))
        if not ok:
            output = runners.printable(proc.tail(result.stdout + result.stderr, OUTPUT_TAIL))
            raise BuildError(
                f"{build.node.section}: building a wheel from {package.filename} failed "
                f"(exit code {result.returncode})\n--- output (last {OUTPUT_TAIL} lines) ---\n"
                f"{output}",
                hint=f"add what the build needs to build_system of {build.node.section} (or "
                "an ancestor), or compile the library it links against in a run step",
            )
        return _remember(build.cache_dir, key, package, the_wheel(work / "out", build, package))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def the_wheel(out: Path, build: SdistBuild, package: Package) -> Path:
    """The one wheel the sandboxed build left in ``out``: a regular file, never a symlink
    (the build's code wrote that directory: a link to a host file would be read as the
    wheel)."""
    found = sorted(out.iterdir())
    wheels = [p for p in found if p.name.endswith(".whl")]
    if len(wheels) != 1 or not stat.S_ISREG(wheels[0].lstat().st_mode):
        what = "a wheel that is not a regular file" if len(wheels) == 1 else f"{len(wheels)} wheels"
        raise BuildError(
            f"{build.node.section}: building {package.filename} gave {what}",
            hint="the sdist's build backend must produce exactly one wheel file",
        )
    return wheels[0]


def fetch(package: Package, target: Path) -> None:
    """The sdist's bytes at ``target`` (a local path from ``find_links``, or a download),
    checked against the locked sha256."""
    parsed = urlparse(package.url)
    if parsed.scheme in ("", "file"):
        shutil.copyfile(unquote(parsed.path), target)
    elif parsed.scheme in ("http", "https"):
        request = urllib.request.Request(package.url)  # noqa: S310 - http(s) only
        with urllib.request.urlopen(request, timeout=300) as response, target.open("wb") as f:  # noqa: S310
            shutil.copyfileobj(response, f)
    else:
        raise BuildError(
            f"{package.filename}: cannot fetch {package.url!r} (file, http and https only)",
            hint="serve the sdist from an index or a find_links directory",
        )
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    if digest != package.sha256:
        raise BuildError(
            f"{package.filename}: sha256 {digest} does not match the lock's {package.sha256}",
            hint="the index serves other bytes than at lock time: run `layerforge lock` "
            "after checking why",
        )


def _run(build: SdistBuild, package: Package, work: Path) -> proc.Result:
    """apt installs ``build_system`` as root with the system steps' capabilities (dpkg gives
    files to other users); the sdist's build backend then runs as root of a user namespace
    without any capability (like ``verify``), with the network for its build dependencies."""
    build_system = build_system_of(build.project, build.node)
    mounts = cache_mounts(build.cache_dir, work)
    env = dict(sandbox_env((), build.project.source_date_epoch))
    if build_system:
        apt = "apt-get update -q && apt-get install -y -q --no-install-recommends "
        result = _invoke(build, work, apt + shlex.join(build_system), mounts, env, "system")
        if result.returncode != 0:
            return result
    mounts += [
        runners.Mount(Path(proc.find_uv()).resolve(), UV, read_only=True),
        runners.Mount(work / "src", SRC, read_only=True),
        runners.Mount(work / "out", OUT),
    ]
    uv = [UV, "build", "--wheel", "--no-config", "--out-dir", OUT, "--python", PYTHON]
    if build.project.index_url:
        uv += ["--index-url", build.project.index_url]
    for i, link in enumerate(build.project.find_links):
        target = f"{FIND_LINKS}/{i}"
        mounts.append(runners.Mount(link, target, read_only=True))
        uv += ["--find-links", target]
    uv.append(f"{SRC}/{package.filename}")
    env.update(UV_PYTHON_DOWNLOADS="never", UV_NO_PROGRESS="1")
    bundle = proc.ca_bundle()  # uv trusts what it trusts on the host
    if bundle is not None:
        mounts.append(runners.Mount(bundle.resolve(), CA_BUNDLE, read_only=True))
        env["SSL_CERT_FILE"] = CA_BUNDLE
    return _invoke(build, work, shlex.join(uv), mounts, env, "none")


def _invoke(
    build: SdistBuild,
    work: Path,
    command: str,
    mounts: list[runners.Mount],
    env: dict[str, str],
    privileges: runners.Privileges,
) -> proc.Result:
    inv = runners.Invocation(
        rootfs=work / "rootfs",
        argv=("/bin/sh", "-c", "exec 2>&1\n" + command),
        env=tuple(sorted(env.items())),
        mounts=tuple(mounts),
        network=True,  # apt, and the build dependencies from the index
        cwd="/",
        privileges=privileges,
    )
    return runners.run(runners.get_runner(build.runner), runners.prepare(inv))


def _remember(cache_dir: Path, key: str, package: Package, wheel: Path) -> BuiltWheel:
    """Move the wheel into the cache entry ``key`` (whole, or not at all)."""
    area = cachedir.BUILT_WHEELS.path(cache_dir)
    area.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=cachedir.TEMPORARY_PREFIX, dir=area))
    try:
        shutil.move(wheel, tmp / wheel.name)
        digest = hashlib.sha256((tmp / wheel.name).read_bytes()).hexdigest()
        meta = {"filename": wheel.name, "sha256": digest, "sdist": package.sha256}
        atomic_write(tmp / META, json.dumps(meta, indent=1, sort_keys=True).encode())
        entry = area / key
        try:
            os.rename(tmp, entry)
        except OSError:  # another build (a sibling node) made it meanwhile: keep that one
            if cached_wheel(cache_dir, key, package) is None:  # or a broken entry: replace it
                shutil.rmtree(entry, ignore_errors=True)
                os.rename(tmp, entry)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    built = cached_wheel(cache_dir, key, package)
    assert built is not None
    return built
