"""The one place layerforge runs other programs, and stops them (and its own workers) on Ctrl-C.

Argument lists only (never a shell), the tool resolved with ``shutil.which`` first,
output captured and shown on failure.

Stopping promptly: Python delivers ``KeyboardInterrupt`` to the main thread only. Work running
in pool threads (installs, layer writes, sandbox steps) would otherwise carry on until it
finished, and the interpreter waits for those threads before it exits: an interrupted cold build
of a torch base kept downloading and compressing for minutes. The main thread calls
:func:`request_stop`; workers notice it in their loops (:func:`check_stop`) and every program
started through :func:`run` is terminated. Atomic writes keep the store valid whatever stops
where.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

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

# Administrator tools (debootstrap) live here, and a PATH without them is common (a sudo-less
# login shell, cron, CI steps): ``which`` looks here after PATH, as sudo's secure_path would.
_STOP_REQUESTED = threading.Event()


def request_stop() -> None:
    """Ask every worker to stop, and terminate the programs they run."""
    _STOP_REQUESTED.set()
    terminate_all()


def stop_requested() -> bool:
    return _STOP_REQUESTED.is_set()


def check_stop() -> None:
    """Raise KeyboardInterrupt in a worker once a stop was requested."""
    if _STOP_REQUESTED.is_set():
        raise KeyboardInterrupt


def reset_stop() -> None:
    """For a library caller (and tests) that goes on after an interrupted operation."""
    _STOP_REQUESTED.clear()


SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")


@dataclass(frozen=True)
class Result:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


_RESOLVED: dict[tuple[str, str | None], str] = {}  # (tool, PATH) -> absolute path
_RESOLVE_LOCK = threading.Lock()


def which(tool: str) -> str:
    """Absolute path of ``tool`` or a ToolError that says how to install it.

    Resolved once per PATH value, under a lock: the worker threads of a build look tools up
    at the same time, and uv's lookup (``sysconfig``) is not thread-safe on its first use."""
    key = (tool, os.environ.get("PATH"))
    with _RESOLVE_LOCK:
        found = _RESOLVED.get(key)
        if found is None:
            found = _RESOLVED[key] = _lookup(tool)
    return found


def _lookup(tool: str) -> str:
    if tool == "uv":
        return _find_uv()
    found = shutil.which(tool) or shutil.which(tool, path=os.pathsep.join(SBIN_DIRS))
    if found is None:
        hint = INSTALL_HINTS.get(tool, f"install {tool!r} and make sure it is on PATH")
        raise ToolError(f"{tool} is not installed or not on PATH", hint=hint)
    return found


def find_uv() -> str:
    return which("uv")


def ca_bundle() -> Path | None:
    """The CA bundle the programs run by :func:`run` trust (``SSL_CERT_FILE``, which uv
    honours), if set: a program run in the sandbox with a cleared environment (uv building
    an sdist) is given the same file."""
    value = os.environ.get("SSL_CERT_FILE")
    return Path(value) if value and os.path.isfile(value) else None


def _find_uv() -> str:
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
    pass_fds: tuple[int, ...] = (),
) -> Result:
    """Run a program. ``args[0]`` is a tool name or path; it is resolved first.

    ``pass_fds``: open file descriptors the program inherits (e.g. a seccomp filter)."""
    argv = [os.fspath(a) for a in args]
    if os.sep not in argv[0]:
        argv[0] = which(argv[0])
    full_env = dict(os.environ if env is None else env)
    full_env.pop("PYTHONPATH", None)
    returncode, stdout, stderr = _communicate(argv, full_env, cwd, input_text, timeout, pass_fds)
    result = Result(tuple(argv), returncode, stdout, stderr)
    if check and returncode != 0:
        name = Path(argv[0]).name
        output = tail(stderr or stdout)
        raise ToolError(
            f"{name} failed with exit code {returncode}: {' '.join(argv[1:8])}"
            f"{' ...' if len(argv) > 8 else ''}\n{output}"
        )
    return result


def run_attached(args: Sequence[str | os.PathLike[str]], *, pass_fds: tuple[int, ...] = ()) -> int:
    """Run a program on this process's stdin, stdout and stderr (an interactive program, a
    server in the foreground); returns its exit code. Ctrl-C reaches it through the
    terminal's process group, and :func:`request_stop` terminates it like any other."""
    argv = [os.fspath(a) for a in args]
    if os.sep not in argv[0]:
        argv[0] = which(argv[0])
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    check_stop()
    proc = subprocess.Popen(argv, env=env, pass_fds=pass_fds)
    with _RUNNING_LOCK:
        _RUNNING.add(proc)  # type: ignore[arg-type]  # text mode does not matter to stop it
    try:
        return proc.wait()
    except BaseException:
        _stop(proc)  # type: ignore[arg-type]
        raise
    finally:
        with _RUNNING_LOCK:
            _RUNNING.discard(proc)


def feed(args: Sequence[str | os.PathLike[str]], write: Callable[[IO[bytes]], object]) -> Result:
    """Run a program with ``write`` streaming its standard input (a pipe, so nothing is
    staged on disk); its output is captured. Raises ToolError when it fails, naming the
    program and the end of its output (a program that stops reading mid-stream is a
    failure too)."""
    argv = [os.fspath(a) for a in args]
    if os.sep not in argv[0]:
        argv[0] = which(argv[0])
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    check_stop()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=out, stderr=err)
        with _RUNNING_LOCK:
            _RUNNING.add(proc)  # type: ignore[arg-type]
        broken = False
        try:
            assert proc.stdin is not None
            try:
                write(proc.stdin)
                proc.stdin.flush()
            except BrokenPipeError:
                broken = True
            finally:
                with contextlib.suppress(OSError):  # a flush into a closed pipe
                    proc.stdin.close()
            returncode = proc.wait()
        except BaseException:
            _stop(proc)  # type: ignore[arg-type]
            raise
        finally:
            with _RUNNING_LOCK:
                _RUNNING.discard(proc)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    result = Result(tuple(argv), returncode, stdout, stderr)
    if returncode != 0 or broken:
        name = Path(argv[0]).name
        why = f"exit code {returncode}" if returncode else "it stopped reading its input"
        raise ToolError(f"{name} failed ({why}): {' '.join(argv[1:8])}\n{tail(stderr or stdout)}")
    return result


# -- programs running now, so that Ctrl-C stops them (see request_stop) -------------------

_RUNNING: set[subprocess.Popen[str]] = set()
_RUNNING_LOCK = threading.Lock()
TERMINATE_GRACE = 5.0  # seconds between SIGTERM and SIGKILL


def _communicate(
    argv: list[str],
    env: dict[str, str],
    cwd: Path | None,
    input_text: str | None,
    timeout: float | None,
    pass_fds: tuple[int, ...] = (),
) -> tuple[int, str, str]:
    check_stop()  # nothing new starts once a stop was requested
    try:
        proc = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.PIPE if input_text is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            pass_fds=pass_fds,
        )
    except FileNotFoundError as exc:
        raise ToolError(f"cannot run {argv[0]}: {exc}") from exc
    with _RUNNING_LOCK:
        _RUNNING.add(proc)
    try:
        stdout, stderr = proc.communicate(input_text, timeout=timeout)
    except BaseException:  # KeyboardInterrupt in the main thread, TimeoutExpired
        _stop(proc)
        raise
    finally:
        with _RUNNING_LOCK:
            _RUNNING.discard(proc)
    check_stop()  # a program we terminated: report the interrupt, not its failure
    return proc.returncode, stdout, stderr


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(TERMINATE_GRACE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def terminate_all() -> None:
    """Terminate every program started through :func:`run` that is still running."""
    with _RUNNING_LOCK:
        running = list(_RUNNING)
    for proc in running:
        with contextlib.suppress(OSError):
            if proc.poll() is None:
                proc.terminate()
