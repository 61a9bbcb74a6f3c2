"""Run a command inside a root filesystem, confined: bubblewrap (default), podman, or chroot.

A :class:`Runner` turns an :class:`Invocation` (root filesystem, argv, environment, host
directories to mount, network on or off, read-only or not, privileges) into the argv of a
host command; :func:`run` runs it through :func:`layerforge.proc.run` with the seccomp filter
of :mod:`~layerforge.sandbox.seccomp` on an inherited file descriptor. Implementations sit in
:data:`RUNNERS`:

- ``bwrap`` (the default, the only one that keeps every promise of docs/sandbox.md): new
  mount, pid, ipc, uts, cgroup and network namespaces (``--unshare-all``, ``--share-net``
  only when the invocation asks for the network), ``--new-session``, ``--die-with-parent``,
  the seccomp filter, and either a user namespace without any capability
  (``privileges="none"``: verify, bytecode) or real root in the mount namespace with a small
  set of capabilities (``privileges="system"``: apt, dpkg and run steps, which must chown
  files to other users): :data:`SYSTEM_CAPS`, never ``CAP_SYS_ADMIN``,
  ``CAP_DAC_READ_SEARCH``, ``CAP_MKNOD``, ``CAP_SYS_PTRACE`` or ``CAP_NET_RAW``.
- ``podman``: ``podman run --rootfs`` with ``--cap-drop=all`` (plus :data:`SYSTEM_CAPS` for
  system steps), ``--security-opt no-new-privileges``, ``--network none`` without network,
  podman's own seccomp profile.
- ``chroot``: UNCONFINED, an explicit opt-in for trusted images on machines without
  bubblewrap: a private mount namespace (``unshare``) and ``chroot``, with every capability
  of root. Never chosen by default.

:func:`get_runner` picks one and fails with the install command when it is missing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import select
import shlex
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from layerforge import proc
from layerforge.errors import SandboxError, ToolError, UsageError
from layerforge.sandbox import seccomp

Privileges = Literal["none", "system"]
SANDBOX_EXIT_TIMEOUT = 60  # seconds to wait for the processes a program left to be killed
MAX_LINKS = 40  # symlinks followed while resolving one mount point, as Linux allows

# Docker's default capabilities, less CAP_MKNOD (no device cgroup guards the nodes it could
# make) and CAP_NET_RAW: what apt, dpkg and maintainer scripts need as root.
SYSTEM_CAPS = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_AUDIT_WRITE",
    "CAP_SETFCAP",
)


# Global kernel settings under /proc that root may write by file mode alone, without any
# capability (kernel.core_pattern runs a program as host root; sysrq-trigger reboots):
# read-only in the sandbox, as in Docker. bwrap 0.8 leaves them writable.
PROC_READ_ONLY = (
    "/proc/sys",
    "/proc/sysrq-trigger",
    "/proc/irq",
    "/proc/bus",
    "/proc/fs",
    "/proc/acpi",
    "/proc/scsi",
)


# Files of /proc that show the whole host (the timers and tasks of every process, the
# caller's keys, memory): hidden behind /dev/null in the sandbox, as Docker masks them.
PROC_MASKED = (
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/timer_list",
    "/proc/timer_stats",
)


# Control characters of a sandboxed program's output, shown instead of sent when the output
# is part of an error printed to the user's terminal (ESC sequences clear the screen, set
# the title, print a fake success, write the clipboard...). Newlines and tabs stay.
_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0)) if c not in (9, 10)}


def printable(text: str) -> str:
    """``text`` (output of a sandboxed program) with its control characters escaped."""
    return text.translate(_CONTROL)


@dataclass(frozen=True)
class Mount:
    """A host path visible at ``target`` (absolute, inside the root) during a run."""

    source: Path
    target: str
    read_only: bool = False


@dataclass(frozen=True)
class Invocation:
    """One program run in a root filesystem.

    ``network``: share the host's network (only system and run steps that ask for it).
    ``privileges``: ``"none"`` runs as root of a user namespace without any capability;
    ``"system"`` as root with :data:`SYSTEM_CAPS` (apt and dpkg change owners of files).
    """

    rootfs: Path
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    mounts: tuple[Mount, ...] = ()
    network: bool = False
    read_only: bool = False  # the root filesystem itself
    cwd: str = "/"
    tmpfs: tuple[str, ...] = field(default=("/tmp",))  # noqa: S108 - inside the sandbox
    privileges: Privileges = "none"
    resolv_conf: str = "/etc/resolv.conf"  # where the host's is bound (with the network)
    user: tuple[int, int] | None = None  # (uid, gid) to run as (verify of a non-root image)


# Runs the program as the image's user: as the host's root, bwrap keeps no user namespace
# (a one-uid namespace cannot tell the user's files from root's) and this, with the image's
# own Python, drops to the user; the setuid and setgid capabilities go with the switch, and
# no_new_privs (bwrap's) keeps setuid programs from regaining them.
SETUID_PYTHON = "/opt/venv/bin/python"
_SETUID = (
    "import os, sys; os.setgroups([]); os.setgid({gid}); os.setuid({uid}); "
    "os.execvp(sys.argv[1], sys.argv[1:])"
)


def drops_to_user(inv: Invocation, euid: int | None = None) -> bool:
    """Whether bwrap runs ``inv`` as real root and switches to ``inv.user`` inside (else, for
    a user, a user namespace maps the caller to it: ownership is then not checked)."""
    if inv.user is None or inv.user[0] == 0 or inv.privileges != "none":
        return False
    return (os.geteuid() if euid is None else euid) == 0


def user_argv(inv: Invocation) -> tuple[str, ...]:
    if not drops_to_user(inv):
        return inv.argv
    assert inv.user is not None
    code = _SETUID.format(uid=inv.user[0], gid=inv.user[1])
    return (SETUID_PYTHON, "-I", "-S", "-c", code, *inv.argv)


@dataclass(frozen=True)
class Fds:
    """File descriptors the runner's program inherits: the compiled seccomp filter (to read)
    and a pipe (to write) where bubblewrap says which host pid its sandbox's init has."""

    seccomp: int
    info: int


class Runner(Protocol):
    name: str

    def argv(self, inv: Invocation, fds: Fds) -> list[str]:
        """The host command that runs ``inv``."""
        ...


def _host_resolv() -> Path | None:
    path = Path("/etc/resolv.conf")
    return path if path.exists() else None


def mount_points(inv: Invocation) -> list[str]:
    """Paths inside the root that a run mounts over (created beforehand if missing)."""
    points = [m.target for m in inv.mounts]
    if inv.network and _host_resolv() is not None:
        points.append(inv.resolv_conf)
    return points


def run(runner: Runner, inv: Invocation) -> proc.Result:
    """Run ``inv`` with ``runner`` (never raises for the program's exit code), and return
    only once every process of the sandbox is gone. The mount points are prepared first
    (:func:`prepare`)."""
    inv = prepare(inv)
    filter_fd = os.memfd_create("layerforge-seccomp")
    info_read, info_write = os.pipe()
    try:
        data = seccomp.compile_filter()
        while data:
            data = data[os.write(filter_fd, data) :]
        os.lseek(filter_fd, 0, os.SEEK_SET)
        argv = runner.argv(inv, Fds(filter_fd, info_write))
        result = proc.run(argv, check=False, pass_fds=(filter_fd, info_write))
        os.close(info_write)
        info_write = -1
        _wait_for_sandbox(_read_all(info_read))
        return result
    finally:
        for fd in (filter_fd, info_read, info_write):
            if fd >= 0:
                os.close(fd)


def run_attached(runner: Runner, inv: Invocation) -> int:
    """Like :func:`run`, with the program on this process's stdin, stdout and stderr (``layerforge
    run``); returns its exit code once every process of the sandbox is gone."""
    inv = prepare(inv)
    filter_fd = os.memfd_create("layerforge-seccomp")
    info_read, info_write = os.pipe()
    try:
        data = seccomp.compile_filter()
        while data:
            data = data[os.write(filter_fd, data) :]
        os.lseek(filter_fd, 0, os.SEEK_SET)
        argv = runner.argv(inv, Fds(filter_fd, info_write))
        code = proc.run_attached(argv, pass_fds=(filter_fd, info_write))
        os.close(info_write)
        info_write = -1
        _wait_for_sandbox(_read_all(info_read))
        return code
    finally:
        for fd in (filter_fd, info_read, info_write):
            if fd >= 0:
                os.close(fd)


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _wait_for_sandbox(info: bytes) -> None:
    """bubblewrap exits as soon as the program does, while the init of its pid namespace is
    still killing what the program left behind (a daemon): wait for that init to end (the
    kernel ends it only after every other process of its namespace). If it has not ended
    after :data:`SANDBOX_EXIT_TIMEOUT`, raise: what the program left (a work copy to diff)
    must never be read while one of its processes may still change it."""
    try:
        pid = int(json.loads(info)["child-pid"])
        pidfd = os.pidfd_open(pid)
    except (ValueError, KeyError, TypeError, ProcessLookupError):
        return  # no info (another runner, or bwrap failed early), or already gone
    try:
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/ns/pid") == os.readlink("/proc/self/ns/pid"):
                return  # the pid was reused by a process of ours: not the sandbox
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        if not poller.poll(SANDBOX_EXIT_TIMEOUT * 1000):
            raise SandboxError(
                f"the sandbox's processes did not end within {SANDBOX_EXIT_TIMEOUT} s of its "
                f"program (its init is host pid {pid}); its result is not used",
                hint="a process stuck in the kernel (I/O on a hung device?): retry the "
                "build; if it persists, look at that process",
            )
    finally:
        os.close(pidfd)


class Bwrap:
    name = "bwrap"

    def argv(self, inv: Invocation, fds: Fds) -> list[str]:
        if not seccomp.host_supported():
            raise ToolError(
                "the sandbox's seccomp filter is built for x86-64 only",
                hint="run layerforge on an x86-64 machine, or use --runner podman",
            )
        out = [proc.which("bwrap"), *_namespaces(inv), "--die-with-parent", "--new-session"]
        out += ["--cap-drop", "ALL"]
        if inv.privileges == "system":
            for cap in SYSTEM_CAPS:
                out += ["--cap-add", cap]
        elif drops_to_user(inv):
            out += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        out += ["--ro-bind" if inv.read_only else "--bind", str(inv.rootfs), "/"]
        out += ["--proc", "/proc", "--dev", "/dev", *_proc_guards()]
        for path in inv.tmpfs:
            out += ["--perms", "1777", "--tmpfs", path]
        resolv = _host_resolv()
        if inv.network and resolv is not None:
            out += ["--ro-bind", str(resolv), inv.resolv_conf]
        for m in inv.mounts:
            out += ["--ro-bind" if m.read_only else "--bind", str(m.source), m.target]
        out += ["--seccomp", str(fds.seccomp), "--info-fd", str(fds.info)]
        out += ["--clearenv", "--chdir", inv.cwd]
        for key, value in inv.env:
            out += ["--setenv", key, value]
        return [*out, "--", *user_argv(inv)]


def _proc_guards() -> list[str]:
    """bwrap arguments: the global settings under /proc read-only, the host-wide views
    masked (those this kernel has: the sandbox's /proc is of the same kernel)."""
    out: list[str] = []
    for path in PROC_READ_ONLY:
        out += ["--ro-bind-try", path, path]
    for path in PROC_MASKED:
        if os.path.exists(path):
            out += ["--ro-bind", "/dev/null", path]
    return out


def _namespaces(inv: Invocation) -> list[str]:
    """Every namespace new; the network shared only on request; a user namespace (mapping
    root to the caller, without capabilities) unless the step needs real root."""
    if inv.privileges == "none" and not drops_to_user(inv):
        uid, gid = inv.user or (0, 0)
        out = ["--unshare-all", "--unshare-user", "--uid", str(uid), "--gid", str(gid)]
        return [*out, "--share-net"] if inv.network else out
    out = ["--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-cgroup"]
    return out if inv.network else [*out, "--unshare-net"]


class Chroot:
    """UNCONFINED (explicit opt-in, trusted images only): ``unshare --mount [--net] --fork
    --pid sh -c 'mount ...; exec chroot ROOT env ... ARGV'``. The program keeps every
    capability of root and no seccomp filter applies: it can leave the chroot. Its /dev is
    a minimal one (:func:`_minimal_dev`), not the host's, so that an ordinary step cannot
    harm the host's devices by accident."""

    name = "chroot"

    def argv(self, inv: Invocation, fds: Fds) -> list[str]:
        if os.geteuid() != 0:
            raise ToolError(
                "the chroot runner needs root",
                hint="install bubblewrap (apt-get install -y bubblewrap) and use the default",
            )
        root = shlex.quote(str(inv.rootfs))
        lines = ["set -e", "mount --make-rprivate /"]
        if inv.read_only:
            lines.append(f"mount --bind {root} {root} && mount -o remount,bind,ro {root}")
        lines += [f"mount -t proc proc {root}/proc", *_minimal_dev(f"{root}/dev")]
        lines += [f"mount -t tmpfs -o mode=1777 tmpfs {root}{shlex.quote(p)}" for p in inv.tmpfs]
        binds = list(inv.mounts)
        resolv = _host_resolv()
        if inv.network and resolv is not None:
            binds.append(Mount(resolv, inv.resolv_conf, read_only=True))
        for m in binds:
            target = f"{root}{shlex.quote(m.target)}"
            lines.append(f"mount --bind {shlex.quote(str(m.source))} {target}")
            if m.read_only:
                lines.append(f"mount -o remount,bind,ro {target}")
        env = [f"{k}={v}" for k, v in inv.env]
        user = [f"--userspec={inv.user[0]}:{inv.user[1]}"] if inv.user else []
        inner = [proc.which("chroot"), *user, str(inv.rootfs), "/usr/bin/env", "-i", *env,
                 "/bin/sh", "-c", 'cd "$0" && exec "$@"', inv.cwd, *inv.argv]  # fmt: skip
        lines.append("exec " + shlex.join(inner))
        flags = ["--mount", "--fork", "--pid"] + ([] if inv.network else ["--net"])
        return [proc.which("unshare"), *flags, "/bin/sh", "-c", "\n".join(lines)]


def _minimal_dev(dev: str) -> list[str]:
    """Shell lines that mount a /dev like bubblewrap's at ``dev`` (quoted): a tmpfs with the
    harmless devices bound from the host, a private devpts, shm, and the fd links. Never the
    host's /dev itself (disks; a writable bind that ``rm -rf /dev/*`` empties on the host)."""
    lines = [f"mount -t tmpfs -o mode=0755,nosuid,noexec tmpfs {dev}"]
    for name in ("null", "zero", "full", "random", "urandom", "tty"):
        lines.append(f": > {dev}/{name} && mount --bind /dev/{name} {dev}/{name}")
    lines += [
        f"mkdir {dev}/pts {dev}/shm",
        f"mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts {dev}/pts",
        f"ln -s pts/ptmx {dev}/ptmx",
        f"mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs {dev}/shm",
        f"ln -s /proc/self/fd {dev}/fd",
    ]
    for fd, name in enumerate(("stdin", "stdout", "stderr")):
        lines.append(f"ln -s /proc/self/fd/{fd} {dev}/{name}")
    return lines


class Podman:
    """``podman run --rootfs``: all capabilities dropped (:data:`SYSTEM_CAPS` added back for
    system steps), no new privileges, podman's default seccomp profile (``fds`` are not
    used), no network unless asked for."""

    name = "podman"

    def argv(self, inv: Invocation, fds: Fds) -> list[str]:
        out = [proc.which("podman"), "run", "--rm", "--rootfs", str(inv.rootfs) + ":O"]
        if inv.read_only:
            out[-1] = str(inv.rootfs)
            out.append("--read-only")
        out += ["--cap-drop=all", "--security-opt", "no-new-privileges"]
        if inv.privileges == "system":
            out += [f"--cap-add={cap}" for cap in SYSTEM_CAPS]
        if not inv.network:
            out += ["--network", "none"]
        for path in inv.tmpfs:
            out += ["--tmpfs", path]
        for m in inv.mounts:
            out += ["--volume", f"{m.source}:{m.target}:{'ro' if m.read_only else 'rw'}"]
        for key, value in inv.env:
            out += ["--env", f"{key}={value}"]
        out += ["--workdir", inv.cwd]
        if inv.user is not None:
            out += ["--user", f"{inv.user[0]}:{inv.user[1]}"]
        return [*out, *inv.argv]


RUNNERS: dict[str, Callable[[], Runner]] = {"bwrap": Bwrap, "chroot": Chroot, "podman": Podman}
TOOLS = {"bwrap": "bwrap", "chroot": "unshare", "podman": "podman"}


def get_runner(name: str | None = None) -> Runner:
    """The runner called ``name``; by default bubblewrap (no fallback: a missing bwrap is a
    ToolError with the install command; chroot is only ever chosen by name)."""
    name = name or "bwrap"
    if name not in RUNNERS:
        raise UsageError(
            f"unknown runner {name!r}", hint=f"choose one of: {', '.join(sorted(RUNNERS))}"
        )
    proc.which(TOOLS[name])  # a missing tool is a ToolError with the install command
    return RUNNERS[name]()


def prepare(inv: Invocation) -> Invocation:
    """Create the mount points a run needs inside its root filesystem (on the host), and
    return ``inv`` with every mount target replaced by the path it resolves to in the root.

    The root filesystem and the writable cache directories are the image's (or a previous
    step's) to shape: any directory on the way to a mount point may be a symlink, absolute
    (``/var -> /root``) or climbing (``../../oldroot/root``). Followed by the host's
    ``mkdir`` or by bubblewrap's own setup (which runs as the host's root, with the new root
    at ``/newroot`` and the host at ``/oldroot``), such a symlink would create directories
    and files on the host. So each target is resolved here, component by component, the
    way the program will see it: symlinks are read, never followed by the host; absolute
    ones restart at the root of the sandbox, ``..`` stops there; a directory mounted by an
    earlier mount (the bytecode cache, say) is looked up in that mount's host source. The
    last component is never followed (a symlink there is replaced). The runner is then
    given targets without any symlink. Nothing else writes in the root between this and
    the run (the previous run's processes are all gone).
    """
    for top in ("/proc", "/dev"):
        _mount_point(inv.rootfs, top, (), is_file=False)
    tmpfs = tuple(_mount_point(inv.rootfs, p, (), is_file=False) for p in inv.tmpfs)
    done: list[Mount] = []
    for m in inv.mounts:
        target = _mount_point(inv.rootfs, m.target, tuple(done), is_file=m.source.is_file())
        done.append(Mount(m.source, target, m.read_only))
    resolv = inv.resolv_conf
    if inv.network and _host_resolv() is not None:
        resolv = _mount_point(inv.rootfs, inv.resolv_conf, tuple(done), is_file=True)
    return dataclasses.replace(inv, tmpfs=tmpfs, mounts=tuple(done), resolv_conf=resolv)


def _host_dir(rootfs: Path, inner: list[str], mounts: tuple[Mount, ...]) -> str:
    """The host path of ``inner`` (components of a path in the sandbox, no symlinks): under
    the deepest mount whose target holds it, else under the root filesystem."""
    mount = _mount_of(inner, mounts)
    if mount is None:
        return os.path.join(rootfs, *inner)
    return os.path.join(mount.source, *inner[len(_parts_of(mount.target)) :])


def _mount_of(inner: list[str], mounts: tuple[Mount, ...]) -> Mount | None:
    """The deepest of ``mounts`` whose target holds ``inner``."""
    best: Mount | None = None
    for m in mounts:
        parts = _parts_of(m.target)
        if inner[: len(parts)] == parts and (
            best is None or len(parts) >= len(_parts_of(best.target))
        ):
            best = m
    return best


def _parts_of(target: str) -> list[str]:
    return [p for p in target.split("/") if p]


def _writable(target: str, inner: list[str], mounts: tuple[Mount, ...]) -> None:
    """Refuse to create or remove anything for ``target`` inside a read-only mount (the
    base's context, the application layer): those host directories are not outputs."""
    mount = _mount_of(inner, mounts)
    if mount is not None and mount.read_only:
        raise SandboxError(
            f"cannot mount at {target}: it leads to /{'/'.join(inner)}, inside {mount.target} "
            "(read-only)",
            hint="the image (or a step) made a directory on the way a symlink: make it a "
            "directory again",
        )


def _mount_point(rootfs: Path, target: str, mounts: tuple[Mount, ...], *, is_file: bool) -> str:
    """Resolve ``target`` in the sandbox (see :func:`prepare`), creating the missing
    directories and the mount point itself; return it as an absolute path without
    symlinks."""
    parts = [p for p in target.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise SandboxError(f"mount point {target!r} is not a plain absolute path")
    inner = [*_resolve_dirs(rootfs, target, parts[:-1], mounts), parts[-1]]
    if inner[0] in ("proc", "dev") and len(inner) > 1:
        raise SandboxError(
            f"cannot mount at {target}: it leads to /{'/'.join(inner)}, in the sandbox's "
            f"own /{inner[0]}",
            hint="the image (or a step) made a directory on the way a symlink: make it a "
            "directory again",
        )
    path = "/" + "/".join(inner)
    host = _host_dir(rootfs, inner, mounts)
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISLNK(os.lstat(host).st_mode):
            _writable(target, inner, mounts)
            os.unlink(host)  # e.g. a resolv.conf symlink: the bind mount must not follow it
    try:
        if not os.path.lexists(host):
            _writable(target, inner, mounts)
        if is_file:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            os.close(os.open(host, flags, 0o644))
        else:
            os.mkdir(host, 0o755)
    except FileExistsError:
        mode = os.lstat(host).st_mode
        if is_file and not stat.S_ISREG(mode):
            raise _not_a(target, path, "file") from None
        if not is_file and not stat.S_ISDIR(mode):
            raise _not_a(target, path, "directory") from None
    return path


def _resolve_dirs(
    rootfs: Path, target: str, parts: list[str], mounts: tuple[Mount, ...]
) -> list[str]:
    """The directories ``parts`` resolved in the sandbox, symlinks read (never followed on
    the host), missing ones created."""
    inner: list[str] = []
    todo = list(parts)
    links = 0
    while todo:
        part = todo.pop(0)
        if part == "..":
            if inner:
                inner.pop()
            continue
        host = _host_dir(rootfs, [*inner, part], mounts)
        try:
            st = os.lstat(host)
        except FileNotFoundError:
            _writable(target, [*inner, part], mounts)
            os.mkdir(host, 0o755)
            inner.append(part)
            continue
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > MAX_LINKS:
                raise SandboxError(f"cannot mount at {target}: too many levels of symlinks")
            link = os.readlink(host)
            if link.startswith("/"):
                inner = []
            todo = [p for p in link.split("/") if p not in ("", ".")] + todo
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise _not_a(target, "/" + "/".join([*inner, part]), "directory")
        inner.append(part)
    return inner


def _not_a(target: str, path: str, kind: str) -> SandboxError:
    return SandboxError(
        f"cannot mount at {target}: {path} in the root filesystem is not a {kind}",
        hint=f"make {path} a {kind} in the image (or in the step that changed it)",
    )
