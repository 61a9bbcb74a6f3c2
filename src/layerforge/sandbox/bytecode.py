"""``compile_bytecode = true``: byte-compile installed wheels with the image's own Python.

The staged ``site-packages`` is bind-mounted at its place in the image
(``/opt/venv/lib/pythonX.Y/site-packages``) over the unpacked image, read-only otherwise
and without network, and ``python -m compileall`` runs there with
``--invalidation-mode unchecked-hash``: the ``.pyc`` files carry the image interpreter's
magic number and the in-image paths, and no mtime, so they are reproducible. They then go
into the same dependency layer(s) as their sources, listed in each RECORD.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from layerforge import cmd
from layerforge.errors import BuildError
from layerforge.events import Event
from layerforge.ossource import Layer
from layerforge.sandbox import runner as runners
from layerforge.sandbox.system import Sandbox
from layerforge.sandbox.unpack import unpack_chain

PYTHON = "/opt/venv/bin/python"


def compile_stage(
    stage: Path, python: str, image_layers: Sequence[Layer], sandbox: Sandbox, task: str
) -> None:
    """Compile ``stage/lib/pythonX.Y/site-packages`` in place, inside the image."""
    site = f"/opt/venv/lib/python{python}/site-packages"
    runner = runners.get_runner(sandbox.runner)
    chain = [(x.descriptor.digest, x.descriptor.media_type) for x in image_layers]
    rootfs = unpack_chain(sandbox.store, chain, sandbox.cache_dir / "rootfs")
    inv = runners.Invocation(
        rootfs=rootfs,
        argv=(
            PYTHON,
            "-m",
            "compileall",
            "-q",
            "-j",
            "0",
            "--invalidation-mode",
            "unchecked-hash",
            site,
        ),
        env=(("PATH", "/opt/venv/bin:/usr/bin:/bin"), ("SOURCE_DATE_EPOCH", str(sandbox.epoch))),
        mounts=(runners.Mount(stage / "lib" / f"python{python}" / "site-packages", site),),
        network=False,
        read_only=True,
    )
    inv = runners.prepare(inv)
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
            f"{cmd.tail(result.stdout + result.stderr)}",
            hint="set compile_bytecode = false for this node, or check its interpreter",
        )
