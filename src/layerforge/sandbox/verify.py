"""Verify an image from the inside: its ``verify`` statements, run in its own root filesystem.

Each statement is a Python statement run with ``/opt/venv/bin/python -c``, or a shell
command with a ``sh:`` prefix run with ``/bin/sh -c``. A service also checks that the
executable of its command (or entrypoint) exists on the image's PATH. Everything runs
through a :mod:`~layerforge.sandbox.runner` over the unpacked image (cached by its chain
of layers), read-only, without network, with the image's Env and WorkingDir.

The first failure raises :class:`~layerforge.errors.VerifyError` with the statement and the
exception text (the last line of the traceback) plus the tail of the output.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from layerforge import cachedir, proc
from layerforge.errors import VerifyError
from layerforge.events import Event, Reporter, step
from layerforge.manifest import Node
from layerforge.oci.layout import Store
from layerforge.oci.unpack import chain_id, unpack_chain, unpack_layer_tree
from layerforge.records import ImageRecord
from layerforge.sandbox import nonroot
from layerforge.sandbox import runner as runners

PYTHON = "/opt/venv/bin/python"
OUTPUT_TAIL = 15
PYC_PREFIX = "/var/cache/layerforge-pyc"  # PYTHONPYCACHEPREFIX inside the sandbox


@dataclass(frozen=True)
class Check:
    label: str  # the statement as written, or "command: NAME"
    argv: tuple[str, ...]


@dataclass(frozen=True)
class CheckResult:
    node: str
    label: str
    ok: bool
    seconds: float


def checks(node: Node) -> list[Check]:
    out: list[Check] = []
    for statement in node.verify:
        if statement.startswith("sh:"):
            out.append(Check(statement, ("/bin/sh", "-c", statement[3:].strip())))
        else:
            out.append(Check(statement, (PYTHON, "-c", statement)))
    program = node.entrypoint or node.command
    if node.kind == "service" and program:
        exe = program[0]
        test = 'test -x "$1"' if exe.startswith("/") else 'command -v "$1" >/dev/null'
        script = f'{test} || {{ echo "$1: not found on PATH=$PATH" >&2; exit 127; }}'
        out.append(Check(f"command: {exe}", ("/bin/sh", "-c", script, "sh", exe)))
    return out


def _config(record: ImageRecord, home: str = "/root") -> tuple[tuple[tuple[str, str], ...], str]:
    inner = record.config.get("config", {})
    env = dict(str(e).partition("=")[::2] for e in inner.get("Env") or [])
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(PYTHONPYCACHEPREFIX=PYC_PREFIX, HOME=home, LANG="C.UTF-8")
    return tuple(sorted(env.items())), str(inner.get("WorkingDir") or "/")


# Where the image's Python and its venv live: their bytecode is shared between verifies
# (under PYTHONPYCACHEPREFIX, the tree of each source's absolute path); the rest is not.
SHARED_TREES = ("usr", "opt/venv")


@contextmanager
def bytecode_cache(cache_dir: Path, root: Root, store: Path) -> Iterator[tuple[runners.Mount, ...]]:
    """Where Python writes the bytecode of what the checks import (PYTHONPYCACHEPREFIX).

    The image is read-only, so without this every verify compiled every module it imported
    from source again (seconds for an ML stack). The bytecode of :data:`SHARED_TREES` is
    kept, keyed by the chain of layers of the root filesystem (whose files never change, so
    its bytecode stays valid) and by the store: the checks write there, and Python trusts
    any bytecode whose header matches its source's mtime and size, so checks of another
    store (another checkout of the same project, say a fork's pull request on the same CI
    runner) must never see it.

    The prefix itself is a scratch directory of this run, and the shared trees are mounted
    inside it: no mount point is ever made inside a directory that another sandbox (a
    concurrent verify of the same layers) can change, and a sandbox never sees the
    directories that hold the shared trees, so it cannot turn them into symlinks. The
    application mounted at ``workdir`` (changed from build to build while every layer
    entry has the same mtime) and anything else outside the shared trees get the scratch
    directory, never a shared one.
    """
    owner = hashlib.sha256(str(store.resolve()).encode()).hexdigest()[:16]
    shared = cachedir.PYC.path(cache_dir, chain_id(root.chain), owner)
    scratch = Path(tempfile.mkdtemp(prefix=".tmp-", dir=_mkdir(cachedir.PYC.path(cache_dir))))
    mounts = [runners.Mount(scratch, PYC_PREFIX)]
    for tree in SHARED_TREES:
        at = "/" + tree
        if root.app_at is not None and (
            root.app_at == at
            or root.app_at.startswith(at + "/")
            or at.startswith(root.app_at + "/")
        ):
            continue  # the application's bytecode must not be shared
        source = shared / tree
        source.mkdir(parents=True, exist_ok=True)  # no sandbox sees ``shared`` or ``opt``
        mounts.append(runners.Mount(source, PYC_PREFIX + at))
    try:
        yield tuple(mounts)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def verify_image(
    store: Store,
    record: ImageRecord,
    node: Node,
    cache_dir: Path,
    reporter: Reporter,
    runner_name: str | None = None,
    *,
    writable: tuple[str, ...] = (),
) -> list[CheckResult]:
    """Run every check of ``node`` inside ``record``; raise VerifyError on the first failure.

    A node with a non-root ``user`` is checked as that user (:func:`runner.drops_to_user`), with
    its home, its own ``writable`` directories and ``writable`` (its ancestors') writable."""
    todo = checks(node)
    if not todo:
        return []
    runner = runners.get_runner(runner_name)
    with step(reporter, f"unpack:{node.name}", f"unpacking {node.name} to verify it"):
        root = _root_of(store, record, node, cache_dir)
    user = node.user if node.user is not None and not node.user.is_root else None
    env, cwd = _config(record, user.home if user is not None else "/root")
    if user is not None and not runners.drops_to_user(
        runners.Invocation(root.rootfs, (), user=(user.uid, user.gid))
    ):
        reporter.emit(Event("warning", f"verify:{node.name}", nonroot.ONE_UID_WARNING
                            .format(uid=user.uid)))  # fmt: skip
    results: list[CheckResult] = []
    with (
        bytecode_cache(cache_dir, root, store.root) as pyc,
        nonroot.writable_mounts(
            root.rootfs, root.mounts, user, (*writable, *node.writable)
        ) as scratch,
    ):
        nonroot.hand_over(pyc, user)  # the bytecode of what the checks import
        for check in todo:
            inv = runners.Invocation(
                rootfs=root.rootfs,
                argv=check.argv,
                env=env,
                mounts=(*root.mounts, *pyc, *scratch),
                network=False,
                read_only=True,
                cwd=cwd,
                user=(user.uid, user.gid) if user is not None else None,
            )
            task = f"verify:{node.name}"
            reporter.emit(Event("start", task, f"verify {node.name}: {check.label}"))
            inv = runners.prepare(inv)
            started = time.perf_counter()
            result = runners.run(runner, inv)
            seconds = time.perf_counter() - started
            ok = result.returncode == 0
            reporter.emit(Event("finish", task, data={"ok": ok, "check": check.label}))
            if not ok:
                raise _failure(node, record, check, result)
            results.append(CheckResult(node.name, check.label, ok, seconds))
    return results


@dataclass(frozen=True)
class Root:
    """The root filesystem a check runs in: the unpacked chain of layers, what is mounted
    over it, and where the application layer is mounted (if it is)."""

    rootfs: Path
    chain: tuple[str, ...]  # digests of the layers unpacked in ``rootfs``
    mounts: tuple[runners.Mount, ...] = ()
    app_at: str | None = None


def image_root(store: Store, record: ImageRecord, node: Node, cache_dir: Path) -> Root:
    """The root filesystem ``record`` runs in (read-only: the unpacked chains are a shared
    cache), and what is mounted over it; see :func:`_root_of`."""
    return _root_of(store, record, node, cache_dir)


def _root_of(store: Store, record: ImageRecord, node: Node, cache_dir: Path) -> Root:
    """The root filesystem to verify ``record`` in, and what to mount over it.

    A service's last layer is its application layer: files under ``workdir`` only. Rather
    than unpacking (hardlink-copying) the whole image again after every code change, the
    parent's root filesystem (cached, shared by every service on that base) is used with the
    application layer, unpacked on its own, mounted read-only at ``workdir``: the same view
    of the image, in milliseconds. If the parent has files at ``workdir`` (which the image
    would merge), the whole image is unpacked instead.
    """
    chain = [(x.descriptor.digest, x.descriptor.media_type) for x in record.layers]
    workdir = (node.workdir or "").strip("/")
    if node.kind == "service" and node.source is not None and workdir and len(chain) > 1:
        lower = chain_root(store, chain[:-1], cache_dir)
        existing = lower / workdir
        if not existing.exists() or (existing.is_dir() and not any(existing.iterdir())):
            digest, media_type = chain[-1]
            trees = cachedir.LAYER_TREES.path(cache_dir)
            app = unpack_layer_tree(store, digest, media_type, trees).tree / workdir
            if app.is_dir():
                mount = runners.Mount(app, "/" + workdir, read_only=True)
                return Root(lower, tuple(d for d, _ in chain[:-1]), (mount,), "/" + workdir)
    rootfs = chain_root(store, chain, cache_dir)
    return Root(rootfs, tuple(d for d, _ in chain))


def chain_root(store: Store, chain: Sequence[tuple[str, str]], cache_dir: Path) -> Path:
    """The root filesystem of ``(digest, media type)`` layers: a link farm of trees unpacked
    once per layer (:func:`~layerforge.oci.unpack.unpack_chain`), shared by every image and
    every run that uses them, so READ-ONLY: mount it with ``--ro-bind`` (verify, bytecode) or
    copy it (a system step's work copy). Never write into it from the host."""
    trees, roots = cachedir.LAYER_TREES.path(cache_dir), cachedir.ROOTS.path(cache_dir)
    return unpack_chain(store, chain, trees, roots)


def _failure(node: Node, record: ImageRecord, check: Check, result: proc.Result) -> VerifyError:
    output = runners.printable((result.stderr + result.stdout).strip())
    last = output.splitlines()[-1] if output else f"exit code {result.returncode}"
    return VerifyError(
        f"{node.section}.verify: {check.label!r} failed in {node.name} "
        f"({record.manifest.digest[:19]}): {last}\n"
        f"--- output (last {OUTPUT_TAIL} lines) ---\n{proc.tail(output, OUTPUT_TAIL)}",
        hint="fix the image (requirements, system packages, source) or the statement; "
        "`layerforge build --no-verify` skips verification",
    )
