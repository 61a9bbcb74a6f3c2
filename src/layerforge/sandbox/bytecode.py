"""``compile_bytecode = true``: byte-compile installed wheels with the image's own Python.

The staged ``site-packages`` is bind-mounted read-only at its place in the image
(``/opt/venv/lib/pythonX.Y/site-packages``) over the unpacked image, read-only too and
without network, and ``python -m compileall`` runs there with
``--invalidation-mode unchecked-hash``, writing the ``.pyc`` files under
``PYTHONPYCACHEPREFIX`` (the one writable mount: an empty host directory). They carry the
image interpreter's magic number and the in-image paths, and no mtime, so they are
reproducible. The host then copies them next to their sources (regular files only, found
without following a symlink, for sources that exist), and they go into the same dependency
layer(s) as their sources, listed in each RECORD.

The image's Python is the image's code (a hostile base runs its ``sitecustomize`` here):
the staged files are hardlinks to uv's cache, so a writable ``site-packages`` would let it
change what every later install of those wheels on the machine gets, and a ``.pyc`` it
made a symlink would make the host read a host file into the layer.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
from collections.abc import Sequence
from pathlib import Path

from layerforge import proc
from layerforge.errors import BuildError
from layerforge.events import Event, step
from layerforge.oci.layer import Layer
from layerforge.sandbox import runner as runners
from layerforge.sandbox.system import Sandbox
from layerforge.sandbox.verify import chain_root

PYTHON = "/opt/venv/bin/python"
PREFIX = "/var/cache/layerforge-bytecode"  # PYTHONPYCACHEPREFIX inside the sandbox
PYC_NAME = re.compile(r"(?P<stem>[^/]+)\.cpython-\d+\.pyc")


def compile_stage(
    stage: Path, python: str, image_layers: Sequence[Layer], sandbox: Sandbox, task: str
) -> None:
    """Compile ``stage/lib/pythonX.Y/site-packages`` in place, inside the image."""
    site = f"/opt/venv/lib/python{python}/site-packages"
    runner = runners.get_runner(sandbox.runner)
    chain = [(x.descriptor.digest, x.descriptor.media_type) for x in image_layers]
    with step(sandbox.reporter, f"unpack:{task}", "unpacking the image to compile in"):
        rootfs = chain_root(sandbox.store, chain, sandbox.cache_dir)  # shared: mounted read-only
    site_dir = stage / "lib" / f"python{python}" / "site-packages"
    compileall: tuple[str, ...] = (PYTHON, "-m", "compileall", "-q", "-j", "0")
    compileall += ("--invalidation-mode", "unchecked-hash", site)
    out = Path(tempfile.mkdtemp(prefix=".bytecode-", dir=stage.parent))
    try:
        inv = runners.Invocation(
            rootfs=rootfs,
            argv=compileall,
            env=(
                ("PATH", "/opt/venv/bin:/usr/bin:/bin"),
                ("PYTHONPYCACHEPREFIX", PREFIX),
                ("SOURCE_DATE_EPOCH", str(sandbox.epoch)),
            ),
            mounts=(
                runners.Mount(site_dir, site, read_only=True),
                runners.Mount(out, PREFIX),
            ),
            network=False,
            read_only=True,
        )
        _compile(runner, inv, sandbox, task)
        with step(sandbox.reporter, task, "taking the compiled files"):
            _take_bytecode(out, site, site_dir)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _compile(runner: runners.Runner, inv: runners.Invocation, sandbox: Sandbox, task: str) -> None:
    sandbox.reporter.emit(Event("start", task, "compiling bytecode with the image's Python"))
    result = runners.run(runner, inv)
    sandbox.reporter.emit(Event("finish", task, data={"ok": result.returncode in (0, 1)}))
    if result.returncode == 1:  # some files do not compile (tests for other versions...)
        sandbox.reporter.emit(
            Event("warning", task, "some files were not byte-compiled (left as source)")
        )
    elif result.returncode != 0:
        raise BuildError(
            f"compiling bytecode in the image failed with exit code {result.returncode}:\n"
            f"{runners.printable(proc.tail(result.stdout + result.stderr))}",
            hint="set compile_bytecode = false for this node, or check its interpreter",
        )


def _take_bytecode(out: Path, inner_site: str, site: Path) -> None:
    """Copy each ``X.cpython-NN.pyc`` that compileall wrote under ``out`` (the prefix
    tree: ``out/opt/venv/lib/pythonX.Y/site-packages/DIR/``) to
    ``site/DIR/__pycache__/``, for a regular ``site/DIR/X.py``. ``out`` is the sandbox's to
    fill: only regular files are taken, reached through real directories (``os.walk``
    follows no symlink) and opened without following one."""
    site = Path(os.path.realpath(site))
    inner = inner_site.strip("/")
    for dirpath, _dirnames, filenames in os.walk(out):
        rel_dir = os.path.relpath(dirpath, out)
        if rel_dir != inner and not rel_dir.startswith(inner + "/"):
            continue
        target_dir = site / rel_dir[len(inner) :].lstrip("/")
        if os.path.realpath(target_dir) != str(target_dir) or not target_dir.is_dir():
            continue  # no such directory of sources (or not a real one)
        for name in filenames:
            match = PYC_NAME.fullmatch(name)
            source = target_dir / f"{match['stem']}.py" if match else None
            if source is None or source.is_symlink() or not source.is_file():
                continue
            data = _read_regular(os.path.join(dirpath, name))
            if data is not None:
                cache = target_dir / "__pycache__"
                cache.mkdir(exist_ok=True)
                (cache / name).write_bytes(data)


def _read_regular(path: str) -> bytes | None:
    """The content of ``path`` if it is a regular file (never through a symlink)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None  # a symlink, or gone
    with os.fdopen(fd, "rb") as src:
        if not stat.S_ISREG(os.fstat(src.fileno()).st_mode):
            return None
        return src.read()
