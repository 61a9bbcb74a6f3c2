"""A tiny project (a root base from a root filesystem directory and one service) that builds
in well under a second, and the CLI called in-process, for tests of options and transports."""

from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path
from typing import Any

from layerforge.cli import main
from layerforge.oci.layout import Store


def cli(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``layerforge ARGS`` run in this process."""
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdin
    if stdin is not None:
        sys.stdin = io.StringIO(stdin)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        sys.stdin = saved
    return code, out.getvalue(), err.getvalue()


def cli_json(*args: str) -> dict[str, Any]:
    code, out, err = cli(*args, "--json")
    assert code == 0, err[-3000:]
    doc: dict[str, Any] = json.loads(out)
    return doc


def stand_in_os(root: Path) -> None:
    """A minimal root filesystem for a ``rootfs:`` OS source: a stand-in interpreter (nothing
    runs it with --no-verify) and an os-release."""
    (root / "usr/bin").mkdir(parents=True, exist_ok=True)
    (root / "usr/bin/python3.11").write_text("#!/bin/sh\n")
    (root / "etc").mkdir(exist_ok=True)
    (root / "etc/os-release").write_text("ID=test\n")


def tiny_project(
    directory: Path,
    registry: str | None = None,
    base: str = "rootfs:os",
    *,
    project: str = "",
    message: str = "hello",
) -> Path:
    """A root base (``base``, by default a small root filesystem directory) and a service
    ``svc`` whose source prints ``message``; ``project`` adds lines to [project]."""
    stand_in_os(directory / "os")
    (directory / "svc/svc").mkdir(parents=True, exist_ok=True)
    (directory / "svc/svc/__main__.py").write_text(f"print({message!r})\n")
    lines = ["[project]", 'name = "tiny"', 'python = "3.11"']
    lines += [f'registry = "{registry}"'] if registry else []
    lines += [project] if project else []
    (directory / "layerforge.toml").write_text(
        "\n".join(lines) + f'\n\n[bases.base]\nfrom = "{base}"\n\n'
        '[services.svc]\nbase = "base"\nsource = "svc"\ncommand = ["python", "-m", "svc"]\n'
    )
    return directory


def local_digests(store: Path) -> dict[str, str]:
    """node -> manifest digest of ``node:latest``."""
    tags = Store.open(store, create=False).tags()
    return {ref.split(":")[0]: d.digest for ref, d in tags.items() if ref.endswith(":latest")}


def manifest_of(store: Path, ref: str) -> dict[str, Any]:
    opened = Store.open(store, create=False)
    desc = opened.resolve(ref)
    assert desc is not None, f"no {ref} in {store}"
    return opened.read_json(desc.digest)
