"""The one place layerforge runs other programs.

Argument lists only (never a shell), the tool resolved with ``shutil.which`` first,
output captured and shown on failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from layerforge.errors import ToolError

INSTALL_HINTS: dict[str, str] = {
    "debootstrap": "apt-get update && apt-get install -y debootstrap",
    "bwrap": "apt-get update && apt-get install -y bubblewrap",
    "skopeo": "apt-get update && apt-get install -y skopeo",
    "umoci": "apt-get update && apt-get install -y umoci",
    "buildah": "apt-get update && apt-get install -y buildah",
    "docker-registry": "apt-get update && apt-get install -y docker-registry",
    "uv": "pip install uv",
}


@dataclass(frozen=True)
class Result:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


def which(tool: str) -> str:
    """Absolute path of ``tool`` or a ToolError that says how to install it."""
    if tool == "uv":
        return find_uv()
    found = shutil.which(tool)
    if found is None:
        hint = INSTALL_HINTS.get(tool, f"install {tool!r} and make sure it is on PATH")
        raise ToolError(f"{tool} is not installed or not on PATH", hint=hint)
    return found


def find_uv() -> str:
    try:
        from uv import find_uv_bin  # noqa: PLC0415 - optional import, only when uv is needed

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found is None:
            raise ToolError("uv is not installed", hint=INSTALL_HINTS["uv"]) from None
        return found


def tail(text: str, lines: int = 30) -> str:
    parts = text.rstrip().splitlines()
    return "\n".join(parts[-lines:])


def run(
    args: Sequence[str | os.PathLike[str]],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    check: bool = True,
    input_text: str | None = None,
    timeout: float | None = None,
) -> Result:
    """Run a program. ``args[0]`` is a tool name or path; it is resolved first."""
    argv = [os.fspath(a) for a in args]
    if os.sep not in argv[0]:
        argv[0] = which(argv[0])
    full_env = dict(os.environ if env is None else env)
    full_env.pop("PYTHONPATH", None)
    try:
        proc = subprocess.run(
            argv,
            env=full_env,
            cwd=cwd,
            capture_output=True,
            text=True,
            input=input_text,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        raise ToolError(f"cannot run {argv[0]}: {exc}") from exc
    result = Result(tuple(argv), proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode != 0:
        name = Path(argv[0]).name
        output = tail(proc.stderr or proc.stdout)
        raise ToolError(
            f"{name} failed with exit code {proc.returncode}: {' '.join(argv[1:8])}"
            f"{' ...' if len(argv) > 8 else ''}\n{output}"
        )
    return result
