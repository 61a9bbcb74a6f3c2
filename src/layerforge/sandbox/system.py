"""The system layer of a base: apt packages and run steps, in a sandbox, as ONE layer.

The parent image's root filesystem is unpacked (cached by its chain of layers), copied to
a work directory, and the steps run there through a :mod:`~layerforge.sandbox.runner`:
first ``apt-get install`` of ``system``, then each ``run`` step with ``/bin/sh -c``. The
machine's apt archive cache is mounted over ``/var/cache/apt/archives`` (the daemonless
equivalent of a BuildKit cache mount: apt checks what it takes from there against the
lists it verified), directories private to the build over ``/var/lib/apt/lists``,
``/root/.cache/pip`` and ``/root/.cache/uv`` (see :func:`cache_mounts`), and the base's
``context`` directory (if any) read-only at ``/context``: a copy (hardlinks where possible)
of exactly the files its content key covers, so never the store, the cache or what
``.dockerignore`` leaves out. The network is on unless ``network = false``.

The before/after diff (:mod:`~layerforge.sandbox.diff`) becomes one layer, deletions as
whiteouts; caches, logs and ``__pycache__`` never reach it. A failing step raises a
:class:`~layerforge.errors.BuildError` with the command, its exit code and the tail of its
output; nothing is stored.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from layerforge import cachedir, proc
from layerforge.errors import BuildError
from layerforge.events import Event, Reporter, step
from layerforge.fsutil import atomic_write
from layerforge.lock.lockfile import DebPackage
from layerforge.oci.layer import Layer
from layerforge.oci.layout import Store
from layerforge.oci.tarball import Entry
from layerforge.sandbox import runner as runners
from layerforge.sandbox.diff import diff_trees
from layerforge.sandbox.verify import chain_root
from layerforge.sourcetree import copy_tree, scan

CONTEXT = "/context"
REPO = "/run/layerforge-debs"  # the locked .debs of a system step (a local apt repository)
# apt reads only the local repository: the image's sources.list is left as it is
REPO_APT = f"-o Dir::Etc::SourceList={REPO}/sources.list -o Dir::Etc::SourceParts=/nonexistent"
OUTPUT_TAIL = 25


@dataclass(frozen=True)
class SystemSpec:
    """What a base asks of its system layer (all of it is part of the node's content key)."""

    section: str
    system: tuple[str, ...] = ()
    run: tuple[str, ...] = ()
    network: bool = True
    context: Path | None = None
    build_system: tuple[str, ...] = ()  # present for the run steps, purged before the diff
    locked: tuple[DebPackage, ...] = ()  # lock version 2: exactly what the system step installs


@dataclass(frozen=True)
class Sandbox:
    """Where and how to run: the store, the host cache root, the runner, the reporter."""

    store: Store
    cache_dir: Path
    reporter: Reporter
    runner: str | None = None
    epoch: int = 0


def steps(spec: SystemSpec, installed: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
    """(label, shell command) of each step, in order. ``installed``: the Debian packages of
    the parent's root (``build_system`` packages it already has are left alone)."""
    out: list[tuple[str, str]] = []
    wanted = (*spec.system, *(p for p in spec.build_system if p not in spec.system))
    if wanted and spec.locked:  # exactly the locked .debs, from the local repository
        packages = shlex.join(wanted)
        out.append(
            (
                "system",
                f"apt-get {REPO_APT} update -q && apt-get {REPO_APT} install -y -q "
                "--no-install-recommends " + packages,
            )
        )
    elif wanted:
        packages = shlex.join(wanted)
        out.append(
            (
                "system",
                "apt-get update -q && apt-get install -y -q --no-install-recommends " + packages,
            )
        )
    out += [(f"run[{i}]", step) for i, step in enumerate(spec.run)]
    purge = build_only(spec, installed)
    if purge:
        out.append(
            (
                "build_system",
                f"apt-mark auto -qq {shlex.join(purge)} && apt-get autoremove --purge -y -q "
                + AUTOREMOVE_ALL,
            )
        )
    return out


# what a kept package only recommends or suggests goes too (python3.11 suggests binutils):
# the image was installed with --no-install-recommends
AUTOREMOVE_ALL = (
    "-o APT::AutoRemove::RecommendsImportant=false -o APT::AutoRemove::SuggestsImportant=false"
)


def apt_name(spec: str) -> str:
    """The package name of an apt spec (``gcc-12=12.2.0-14``, ``make/bookworm``)."""
    return spec.partition("=")[0].partition("/")[0]


def build_only(spec: SystemSpec, installed: frozenset[str]) -> list[str]:
    """The ``build_system`` packages to take out again before the diff: those the parent
    does not have and ``system`` does not ask for. They are marked automatically installed
    and apt removes them, with every dependency nothing else needs; a package that a
    ``system`` package or a run step's install depends on stays (apt keeps it)."""
    keep = {apt_name(p) for p in spec.system} | installed
    return sorted({apt_name(p) for p in spec.build_system} - keep)


def installed_packages(rootfs: Path) -> frozenset[str]:
    """The Debian packages installed in ``rootfs`` (its dpkg status file), by name."""
    try:
        text = (rootfs / "var/lib/dpkg/status").read_text(errors="replace")
    except OSError:
        return frozenset()
    out: set[str] = set()
    for stanza in text.split("\n\n"):
        fields = dict(
            line.partition(": ")[::2] for line in stanza.splitlines() if not line[:1].isspace()
        )
        if fields.get("Status", "").endswith(" installed") and fields.get("Package"):
            out.add(fields["Package"])
    return frozenset(out)


def cache_mounts(cache_dir: Path, work: Path) -> list[runners.Mount]:
    """The download caches of a system layer's steps.

    Only apt's archive cache is shared (machine-wide, ``CACHE/sandbox/apt/archives``): apt
    checks every package it takes from there against the package lists it downloaded and
    verified in this build, and fetches it again when it does not match. The package lists
    and the pip and uv caches are private to one build (under ``work``, removed with it):
    apt verifies the signature of its lists only when it downloads them and trusts the
    ones it finds, and pip and uv trust their caches, so a shared copy would let the run
    steps of one project choose what another project's steps install.
    """
    archives = cachedir.DOWNLOADS.path(cache_dir, "apt", "archives")
    _sanitize_archives(archives)
    out = [runners.Mount(archives, "/var/cache/apt/archives")]
    for sub, target in (
        ("apt-lists", "/var/lib/apt/lists"),
        ("pip", "/root/.cache/pip"),
        ("uv", "/root/.cache/uv"),
    ):
        private = work / sub
        private.mkdir()
        if sub == "apt-lists":
            (private / "partial").mkdir()
        out.append(runners.Mount(private, target))
    return out


def _sanitize_archives(archives: Path) -> None:
    """Make the shared archive cache hold what apt puts there and nothing else: regular
    files and a ``partial`` directory. A step of another build may have left symlinks,
    fifos or directories (apt makes none): removed, without following them."""
    archives.mkdir(parents=True, exist_ok=True)
    for entry in os.scandir(archives):
        if entry.is_file(follow_symlinks=False) or (
            entry.name == "partial" and entry.is_dir(follow_symlinks=False)
        ):
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)
    partial = archives / "partial"
    if not partial.is_dir():
        partial.mkdir()
    for entry in os.scandir(partial):
        if not entry.is_file(follow_symlinks=False):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)


def sandbox_env(image_env: Sequence[str], epoch: int) -> tuple[tuple[str, str], ...]:
    env = dict(e.partition("=")[::2] for e in image_env)
    env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    env.update(
        HOME="/root",
        LANG="C.UTF-8",
        DEBIAN_FRONTEND="noninteractive",
        PIP_CACHE_DIR="/root/.cache/pip",
        UV_CACHE_DIR="/root/.cache/uv",
        SOURCE_DATE_EPOCH=str(epoch),
        PYTHONDONTWRITEBYTECODE="1",
    )
    return tuple(sorted(env.items()))


@contextmanager
def _work_copy(lower: Path, sandbox: Sandbox, name: str) -> Iterator[Path]:
    """A work directory: ``rootfs`` (a copy of ``lower``), and room for private caches.
    Making the copy is timed as ``copy:NAME``, removing it as ``cleanup:NAME``."""
    stage = cachedir.STAGE.path(sandbox.cache_dir)
    stage.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="system-", dir=stage))
    try:
        with step(sandbox.reporter, f"copy:{name}", "copying the root filesystem"):
            proc.run(["cp", "-a", "--reflink=auto", str(lower), str(work / "rootfs")])
        yield work
    finally:
        with step(sandbox.reporter, f"cleanup:{name}", "removing the copy"):
            shutil.rmtree(work, ignore_errors=True)


@contextmanager
def _context_copy(spec: SystemSpec, sandbox: Sandbox) -> Iterator[Path | None]:
    """The files of the context tree (as the content key scanned them), staged for the run."""
    if spec.context is None:
        yield None
        return
    tree = scan(spec.context, (sandbox.store.root, sandbox.cache_dir))
    stage = cachedir.STAGE.path(sandbox.cache_dir)
    stage.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="context-", dir=stage))
    try:
        copy_tree(tree, work / "context")
        yield work / "context"
    finally:
        shutil.rmtree(work, ignore_errors=True)


def system_layer(
    spec: SystemSpec,
    parent_layers: Sequence[Layer],
    image_env: Sequence[str],
    sandbox: Sandbox,
    write: Callable[[list[Entry]], Layer],
    repo: Path | None = None,
) -> Layer:
    """Run the steps over the parent's root filesystem; ``write`` stores the diff layer.
    ``repo``: a local apt repository of ``spec.locked`` (:data:`REPO` in the sandbox)."""
    runner = runners.get_runner(sandbox.runner)
    chain = [(x.descriptor.digest, x.descriptor.media_type) for x in parent_layers]
    with step(sandbox.reporter, f"unpack:{spec.section}", f"unpacking {spec.section}'s parent"):
        lower = chain_root(sandbox.store, chain, sandbox.cache_dir)  # shared: copied below
    env = sandbox_env(image_env, sandbox.epoch)
    with _work_copy(lower, sandbox, spec.section) as work, _context_copy(spec, sandbox) as context:
        rootfs = work / "rootfs"
        mounts = cache_mounts(sandbox.cache_dir, work)
        if context is not None:
            mounts.append(runners.Mount(context, CONTEXT, read_only=True))
        if repo is not None:
            mounts.append(runners.Mount(repo, REPO, read_only=True))
        skip: list[str] = []
        for label, command in steps(spec, installed_packages(lower)):
            inv = runners.Invocation(
                rootfs=rootfs,
                argv=("/bin/sh", "-c", "exec 2>&1\n" + command),
                env=env,
                mounts=tuple(mounts),
                network=spec.network,
                cwd="/",
                privileges="system",  # apt and dpkg give files to other users
            )
            inv = runners.prepare(inv)  # mount points as resolved in the root
            skip = runners.mount_points(inv)
            _run_step(runner, inv, spec, label, command, sandbox.reporter)
            if label == "system" and spec.locked:
                check_locked(rootfs, spec)
        with step(sandbox.reporter, f"diff:{spec.section}", "finding what the steps changed"):
            entries = diff_trees(lower, rootfs, skip=skip)
        return write(entries)


def check_locked(rootfs: Path, spec: SystemSpec) -> None:
    """After a locked system step: every locked package is installed at its locked version
    (the run steps that follow are not locked, and may change anything)."""
    have: dict[str, str] = {}
    text = (rootfs / "var/lib/dpkg/status").read_text(errors="replace")
    for stanza in text.split("\n\n"):
        fields = dict(
            line.partition(": ")[::2] for line in stanza.splitlines() if not line[:1].isspace()
        )
        if fields.get("Status", "").endswith(" installed") and fields.get("Package"):
            have[fields["Package"]] = fields.get("Version", "")
    wrong = [
        f"{r.name} {r.version} (installed: {have.get(r.name, 'none')})"
        for r in spec.locked
        if have.get(r.name) != r.version
    ]
    if wrong:
        raise BuildError(
            f"{spec.section}.system installed other versions than layerforge.lock names: "
            + ", ".join(wrong),
            hint="run `layerforge lock --upgrade-os` to lock the system packages again",
        )


def simulate(
    packages: Sequence[str],
    parent_layers: Sequence[Layer],
    image_env: Sequence[str],
    sandbox: Sandbox,
    section: str,
) -> str:
    """The output of ``apt-get install -s`` of ``packages`` over the parent's root filesystem
    (after ``apt-get update``, with the network): what a system step would install today.
    Nothing is kept."""
    runner = runners.get_runner(sandbox.runner)
    chain = [(x.descriptor.digest, x.descriptor.media_type) for x in parent_layers]
    lower = chain_root(sandbox.store, chain, sandbox.cache_dir)  # shared: copied below
    command = "apt-get update -q && apt-get install -s -q --no-install-recommends " + shlex.join(
        packages
    )
    with _work_copy(lower, sandbox, f"{section}-simulate") as work:
        inv = runners.Invocation(
            rootfs=work / "rootfs",
            argv=("/bin/sh", "-c", "exec 2>&1\n" + command),
            env=sandbox_env(image_env, sandbox.epoch),
            mounts=tuple(cache_mounts(sandbox.cache_dir, work)),
            network=True,
            cwd="/",
            privileges="system",
        )
        result = runners.run(runner, runners.prepare(inv))
    if result.returncode != 0:
        output = runners.printable(proc.tail(result.stdout + result.stderr, OUTPUT_TAIL))
        raise BuildError(
            f"{section}.system: apt cannot install {' '.join(packages)}:\n{output}",
            hint="check the names in `system` and `build_system`",
        )
    return result.stdout


def _run_step(
    runner: runners.Runner,
    inv: runners.Invocation,
    spec: SystemSpec,
    label: str,
    command: str,
    reporter: Reporter,
) -> None:
    task = f"sandbox:{spec.section}:{label}"
    reporter.emit(Event("start", task, f"{spec.section}.{label}: {command[:60]}"))
    started = time.perf_counter()
    result = runners.run(runner, inv)
    seconds = time.perf_counter() - started
    ok = result.returncode == 0
    reporter.emit(Event("finish", task, data={"ok": ok, "seconds": round(seconds, 3)}))
    if not ok:
        output = runners.printable(proc.tail(result.stdout + result.stderr, OUTPUT_TAIL))
        hint = "fix the step and build again; nothing was stored"
        if not spec.network:
            hint += " (network = false: the step has no network access)"
        raise BuildError(
            f"{spec.section}.{label} failed with exit code {result.returncode}: "
            f"{command}\n--- output (last {OUTPUT_TAIL} lines) ---\n{output}",
            hint=hint,
        )


# -- machine-wide cache of system layers ---------------------------------------------------------
#
# A system layer takes seconds to minutes (apt, compilers) and does not depend on the store:
# keep each one under the cache directory too (a hardlink to the store's immutable blob
# where possible), so that a fresh store or a second project on the same machine reuses it.


def _machine_paths(cache_dir: Path, key: str) -> tuple[Path, Path]:
    base = cachedir.SYSTEM_LAYERS.path(cache_dir)
    return base / f"{key}.json", base / f"{key}.blob"


def machine_cached(store: Store, cache_dir: Path, key: str) -> Layer | None:
    """The system layer made earlier on this machine with the same inputs, imported into
    ``store`` (digest verified), or None."""
    meta, blob = _machine_paths(cache_dir, key)
    if not meta.is_file():
        return None
    layer = Layer.from_json(json.loads(meta.read_text()))
    digest = layer.descriptor.digest
    if not store.has_blob(digest):
        if not blob.is_file():
            return None
        with store.ingest() as writer, blob.open("rb") as src:
            while chunk := src.read(1 << 20):
                writer.write(chunk)
            writer.commit(digest)
    return layer


def remember(store: Store, cache_dir: Path, key: str, layer: Layer) -> None:
    meta, blob = _machine_paths(cache_dir, key)
    meta.parent.mkdir(parents=True, exist_ok=True)
    tmp = blob.with_name(f".tmp-{os.getpid()}-{blob.name}")
    tmp.unlink(missing_ok=True)
    try:
        os.link(store.blob_path(layer.descriptor.digest), tmp)
    except OSError:
        shutil.copyfile(store.blob_path(layer.descriptor.digest), tmp)
    tmp.replace(blob)
    atomic_write(meta, json.dumps(layer.to_json(), indent=1).encode())
