"""Run a command inside a root filesystem: bubblewrap, chroot or podman.

A :class:`Runner` turns a :class:`Invocation` (root filesystem, argv, environment, host
directories to mount, network on or off, read-only or not) into the argv of a host
command, run through :func:`layerforge.cmd.run`. Implementations sit in :data:`RUNNERS`:

- ``bwrap`` (default): ``bwrap --bind ROOTFS / --proc /proc --dev /dev --tmpfs /tmp
  --die-with-parent``; ``--unshare-net`` when the network is off.
- ``chroot``: for root without bubblewrap; a private mount namespace (``unshare``) with
  bind mounts, then ``chroot``.
- ``podman``: ``podman run --rootfs``, where podman can run containers.

:func:`get_runner` picks one and fails with the install command when it is missing.
"""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from layerforge import cmd
from layerforge.errors import ToolError, UsageError


@dataclass(frozen=True)
class Mount:
    """A host path visible at ``target`` (absolute, inside the root) during a run."""

    source: Path
    target: str
    read_only: bool = False


@dataclass(frozen=True)
class Invocation:
    rootfs: Path
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    mounts: tuple[Mount, ...] = ()
    network: bool = True
    read_only: bool = False  # the root filesystem itself
    cwd: str = "/"
    tmpfs: tuple[str, ...] = field(default=("/tmp",))  # noqa: S108 - inside the sandbox


class Runner(Protocol):
    name: str

    def argv(self, inv: Invocation) -> list[str]:
        """The host command that runs ``inv``."""
        ...


def _host_resolv() -> Path | None:
    path = Path("/etc/resolv.conf")
    return path if path.exists() else None


def mount_points(inv: Invocation) -> list[str]:
    """Paths inside the root that a run mounts over (created beforehand if missing)."""
    points = [m.target for m in inv.mounts]
    if inv.network and _host_resolv() is not None:
        points.append("/etc/resolv.conf")
    return points


class Bwrap:
    name = "bwrap"

    def argv(self, inv: Invocation) -> list[str]:
        root_flag = "--ro-bind" if inv.read_only else "--bind"
        out = [cmd.which("bwrap"), root_flag, str(inv.rootfs), "/"]
        out += ["--proc", "/proc", "--dev", "/dev"]
        for path in inv.tmpfs:
            out += ["--perms", "1777", "--tmpfs", path]
        out += ["--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
        if inv.network:
            resolv = _host_resolv()
            if resolv is not None:
                out += ["--ro-bind", str(resolv), "/etc/resolv.conf"]
        else:
            out.append("--unshare-net")
        for m in inv.mounts:
            out += ["--ro-bind" if m.read_only else "--bind", str(m.source), m.target]
        out += ["--clearenv", "--chdir", inv.cwd]
        for key, value in inv.env:
            out += ["--setenv", key, value]
        return [*out, "--", *inv.argv]


class Chroot:
    """``unshare --mount [--net] --fork sh -c 'mount ...; exec chroot ROOT env ... ARGV'``."""

    name = "chroot"

    def argv(self, inv: Invocation) -> list[str]:
        if os.geteuid() != 0:
            raise ToolError(
                "the chroot runner needs root",
                hint="install bubblewrap (apt-get install -y bubblewrap) or run as root",
            )
        root = shlex.quote(str(inv.rootfs))
        lines = ["set -e", "mount --make-rprivate /"]
        if inv.read_only:
            lines.append(f"mount --bind {root} {root} && mount -o remount,bind,ro {root}")
        lines += [f"mount -t proc proc {root}/proc", f"mount --rbind /dev {root}/dev"]
        lines += [f"mount -t tmpfs -o mode=1777 tmpfs {root}{shlex.quote(p)}" for p in inv.tmpfs]
        binds = list(inv.mounts)
        resolv = _host_resolv()
        if inv.network and resolv is not None:
            binds.append(Mount(resolv, "/etc/resolv.conf", read_only=True))
        for m in binds:
            target = f"{root}{shlex.quote(m.target)}"
            lines.append(f"mount --bind {shlex.quote(str(m.source))} {target}")
            if m.read_only:
                lines.append(f"mount -o remount,bind,ro {target}")
        env = [f"{k}={v}" for k, v in inv.env]
        inner = ["chroot", str(inv.rootfs), "/usr/bin/env", "-i", *env, "/bin/sh", "-c",
                 'cd "$0" && exec "$@"', inv.cwd, *inv.argv]  # fmt: skip
        lines.append("exec " + shlex.join(inner))
        flags = ["--mount", "--fork", "--pid"] + ([] if inv.network else ["--net"])
        return [cmd.which("unshare"), *flags, "/bin/sh", "-c", "\n".join(lines)]


class Podman:
    name = "podman"

    def argv(self, inv: Invocation) -> list[str]:
        out = [cmd.which("podman"), "run", "--rm", "--rootfs", str(inv.rootfs) + ":O"]
        if inv.read_only:
            out[-1] = str(inv.rootfs)
            out.append("--read-only")
        if not inv.network:
            out += ["--network", "none"]
        for path in inv.tmpfs:
            out += ["--tmpfs", path]
        for m in inv.mounts:
            out += ["--volume", f"{m.source}:{m.target}:{'ro' if m.read_only else 'rw'}"]
        for key, value in inv.env:
            out += ["--env", f"{key}={value}"]
        out += ["--workdir", inv.cwd]
        return [*out, *inv.argv]


RUNNERS: dict[str, Callable[[], Runner]] = {"bwrap": Bwrap, "chroot": Chroot, "podman": Podman}


def get_runner(name: str | None = None) -> Runner:
    """The runner called ``name``; by default bubblewrap, or chroot for root without it."""
    if name is None:
        if shutil.which("bwrap") is None and os.geteuid() == 0:
            return Chroot()
        name = "bwrap"
    if name not in RUNNERS:
        raise UsageError(
            f"unknown runner {name!r}", hint=f"choose one of: {', '.join(sorted(RUNNERS))}"
        )
    tool = {"bwrap": "bwrap", "chroot": "chroot", "podman": "podman"}[name]
    cmd.which(tool)  # a missing tool is a ToolError with the install command
    return RUNNERS[name]()


def prepare(inv: Invocation) -> None:
    """Create the mount points a run needs inside a writable root filesystem."""
    for target in mount_points(inv):
        path = inv.rootfs / target.lstrip("/")
        if path.is_symlink():
            path.unlink()  # e.g. a resolv.conf symlink: the bind mount must not follow it
        if target == "/etc/resolv.conf" or (
            any(m.target == target and m.source.is_file() for m in inv.mounts)
        ):
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                path.touch()
        else:
            path.mkdir(parents=True, exist_ok=True)
    for sub in ("proc", "dev", *(p.lstrip("/") for p in inv.tmpfs)):
        (inv.rootfs / sub).mkdir(parents=True, exist_ok=True)
