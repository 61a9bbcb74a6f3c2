"""A node's Python dependency layers: reused whole, or per distribution, or installed.

In order: the node's layers as a whole (same locked distributions as a previous build: no
uv run at all); else the own layers of large distributions, reused by wheel
(:mod:`layerforge.builder.distcache`), while uv installs the other distributions and only
their layers are written; else everything is installed and written (a cold build). The
layer order is the same in all three cases: own layers by distribution name, then the
shared layer of the small ones.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from layerforge import cachedir
from layerforge.builder import distcache, overlap, sdist
from layerforge.builder import python as pydeps
from layerforge.builder.layercache import cache_key, cached_layers, remember_layers, write
from layerforge.events import Event, step
from layerforge.lock.inputs import node_platform
from layerforge.lock.lockfile import Package
from layerforge.manifest import Node
from layerforge.oci.layer import Layer
from layerforge.sandbox.bytecode import compile_stage
from layerforge.sandbox.system import Sandbox

if TYPE_CHECKING:
    from layerforge.builder.context import BuildContext


def deps_cache_key(
    ctx: BuildContext,
    packages: tuple[Package, ...],
    python: str,
    bytecode: list[str] | None = None,  # compile_bytecode: see interpreter_layers
    built_on: list[str] | None = None,  # locked sdists: the layers their wheels are built on
) -> str:
    """The layer-cache key of a node's dependency layers (also used by the disk preflight)."""
    what: dict[str, Any] = {
        "python": python,
        "platform": ctx.lock.platform,
        "threshold": ctx.project.layer_threshold,
        "packages": [[p.name, p.version, p.sha256] for p in sorted(packages)],
    }
    if bytecode is not None:
        what["bytecode"] = bytecode
    if built_on is not None:
        what["built_on"] = built_on
    return cache_key(ctx.layers, what)


# Layers that cannot change the interpreter that byte-compiles a node's wheels: Python
# distributions, application code, runtime-group pins (what layerforge writes under these
# created_by prefixes). Everything else below (OS, system, venv, and layers of foreign
# images) can, and stays in the key.
_NOT_THE_INTERPRETER = ("layerforge: pip ", "layerforge: COPY ", "layerforge: runtime ")


def interpreter_layers(below: Sequence[Layer]) -> list[str]:
    """The digests of the layers below a ``compile_bytecode`` node that its bytecode depends
    on (the bytecode key): ``compileall --invalidation-mode unchecked-hash`` output depends
    on the sources (in the key as the packages' sha256) and on the compiling interpreter,
    not on the Python distributions or code of the tiers below. So a requirement change in
    a tier below does not compile, install and compress a big tier again.

    Assumed: a ``.pth`` file or ``sitecustomize`` of a distribution below, which runs when
    compileall starts, does not change what ``compile()`` produces. If a compile step ever
    runs with hooks that can, the dependency layers must enter this key again."""
    return [x.descriptor.digest for x in below if not x.created_by.startswith(_NOT_THE_INTERPRETER)]


def has_cached_deps(ctx: BuildContext, packages: tuple[Package, ...], python: str) -> bool:
    return cached_layers(ctx.layers, deps_cache_key(ctx, packages, python)) is not None


def dist_cache_key(
    ctx: BuildContext, package: Package, python: str, bytecode: list[str] | None = None
) -> str:
    """The key of one distribution's own layer (see layerforge.builder.distcache)."""
    what: dict[str, Any] = {
        "dist": [package.name, package.version, package.sha256],
        "python": python,
        "platform": ctx.lock.platform,
    }
    if bytecode is not None:
        what["bytecode"] = bytecode
    return cache_key(ctx.layers, what)


def _servable(
    ctx: BuildContext, packages: tuple[Package, ...], python: str, bytecode: list[str] | None
) -> dict[str, distcache.CachedDist]:
    def lookup(package: Package) -> distcache.CachedDist | None:
        if package.kind == "sdist":  # its wheel depends on the image it was built on
            return None
        return distcache.load(ctx.store, dist_cache_key(ctx, package, python, bytecode))

    return distcache.servable(packages, lookup, ctx.project.layer_threshold)


def wheel_bytes_to_install(ctx: BuildContext, packages: tuple[Package, ...], python: str) -> int:
    """Wheel bytes of the distributions a build of these packages installs (disk preflight):
    none if the node's layers are cached, else all but those whose own layer is reused."""
    if not packages or has_cached_deps(ctx, packages, python):
        return 0
    served = _servable(ctx, packages, python, None)
    return sum(p.size for p in packages if p.name not in served)


def dependency_layers(
    ctx: BuildContext,
    node: Node,
    packages: tuple[Package, ...],
    python: str,
    below: tuple[Layer, ...] = (),
) -> list[Layer]:
    below_digests = interpreter_layers(below) if node.compile_bytecode else None
    built_on = [x.descriptor.digest for x in below]
    has_sdists = any(p.kind == "sdist" for p in packages)
    key = deps_cache_key(ctx, packages, python, below_digests, built_on if has_sdists else None)
    cached = cached_layers(ctx.layers, key)
    if cached is not None:
        ctx.reporter.emit(Event("info", f"deps:{node.name}", "dependency layers reused"))
        return cached
    served = _servable(ctx, packages, python, below_digests)
    layers = _install_layers(ctx, node, packages, python, below, served)
    if layers is None:  # a reused distribution shares a path: install them all together
        layers = _install_layers(ctx, node, packages, python, below, {})
    assert layers is not None
    remember_layers(ctx.layers, key, layers)
    return layers


def _install_layers(
    ctx: BuildContext,
    node: Node,
    packages: tuple[Package, ...],
    python: str,
    below: tuple[Layer, ...],
    served: dict[str, distcache.CachedDist],
) -> list[Layer] | None:
    """Install the packages not in ``served`` and write their layers; None if a reused
    distribution shares a path with another one (the caller retries reusing none)."""
    todo = tuple(p for p in packages if p.name not in served)
    if served:
        names = ", ".join(f"{c.name} {c.version}" for c in served.values())
        ctx.reporter.emit(Event("info", f"deps:{node.name}", f"layers reused: {names}"))
    stage_root = cachedir.STAGE.path(ctx.cache_dir)
    stage_root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{node.name}-", dir=stage_root))
    try:
        dists = _install(ctx, node, todo, python, below, work / "prefix") if todo else []
        if distcache.collides(dists, list(served.values())):
            return None
        bytecode = interpreter_layers(below) if node.compile_bytecode else None
        return _write_dep_layers(ctx, node, dists, todo, python, bytecode, served)
    finally:
        with step(ctx.reporter, f"cleanup:{node.name}", "removing the staged install"):
            shutil.rmtree(work, ignore_errors=True)


def _install(
    ctx: BuildContext,
    node: Node,
    packages: tuple[Package, ...],
    python: str,
    below: tuple[Layer, ...],
    prefix: Path,
) -> list[pydeps.DistFiles]:
    task = f"install:{node.name}"
    ctx.reporter.emit(Event("start", task, f"installing {len(packages)} distributions"))
    platform = node_platform(ctx.project, ctx.lock.nodes, node.name)  # as it was locked for
    build = sdist.SdistBuild(ctx.store, ctx.cache_dir, ctx.reporter, ctx.project, node,
                             python, platform, below, ctx.runner)  # fmt: skip
    built = sdist.built_wheels(build, packages)
    pydeps.install(ctx.project, packages, prefix, platform, built)
    install_one = functools.partial(pydeps.install, ctx.project, platform=platform, built=built)
    fixed = overlap.settle(prefix, python, packages, install_one)
    ctx.reporter.emit(Event("finish", task, data={"ok": True}))
    if fixed:
        ctx.reporter.emit(Event("info", task, "shared paths settled: " + ", ".join(fixed)))
    if node.compile_bytecode:
        sandbox = Sandbox(ctx.store, ctx.cache_dir, ctx.reporter, ctx.runner,
                          ctx.project.source_date_epoch)  # fmt: skip
        compile_stage(prefix, python, below, sandbox, f"bytecode:{node.name}")
    with step(ctx.reporter, f"collect:{node.name}", "listing the installed files"):
        return pydeps.collect(prefix, python)


def _write_dep_layers(
    ctx: BuildContext,
    node: Node,
    dists: list[pydeps.DistFiles],
    packages: tuple[Package, ...],
    python: str,
    bytecode: list[str] | None,
    served: dict[str, distcache.CachedDist],
) -> list[Layer]:
    """Own layers (reused and written) by name, then the shared layer; each written own
    layer is remembered for reuse unless another distribution shares one of its paths."""
    big, rest = pydeps.split(dists, ctx.project.layer_threshold)
    own = [(c.name, c.layer) for c in served.values()]
    alone = distcache.reusable(dists)
    for dist in big:
        label = f"{dist.name} {dist.version}"
        task = f"layer:{node.name}:{label}"
        layer = write(ctx.layers, task, list(dist.entries), f"layerforge: pip {label}")
        own.append((dist.name, layer))
        package = distcache.package_of(dist, packages)
        if package is not None and dist.name in alone and package.kind == "wheel":
            key = dist_cache_key(ctx, package, python, bytecode)
            distcache.save(ctx.store, key, dist, layer)
    layers = distcache.ordered(own)
    shared = pydeps.rest_group(rest)
    if shared is not None:
        task, created_by = f"layer:{node.name}:{shared.label}", f"layerforge: pip {shared.label}"
        layers.append(write(ctx.layers, task, shared.entries, created_by))
    return layers
