"""Hostile code in the sandbox: every escape it tries fails, and would have worked before.

A tiny root filesystem holds ``/hostile`` (tests/integration/hostile.c, built statically
here), a shell and ``env``. Each test runs one attempt through :func:`runners.run` with the
invocations the build uses: ``verify`` (read-only root, no network, no privileges, a
writable cache mount) and ``system`` (a writable root, root with the system capabilities).
The same attempt is run under today's runners as they were before this change
(:class:`LegacyBwrap`, :class:`LegacyChroot`: copies of their old command lines) and must
SUCCEED there, which proves the test tests something real.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shlex
import signal
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from layerforge import api, proc
from layerforge.api import verify_project
from layerforge.cli import main
from layerforge.errors import VerifyError
from layerforge.sandbox import runner as runners
from layerforge.sandbox.runner import SYSTEM_CAPS, Bwrap, Fds, Invocation, Mount
from tests.integration.hostroot import copy_programs

pytestmark = pytest.mark.integration

HOSTILE_C = Path(__file__).with_name("hostile.c")
CAP_BITS = {
    "CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3,
    "CAP_FSETID": 4, "CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8,
    "CAP_NET_BIND_SERVICE": 10, "CAP_SYS_CHROOT": 18, "CAP_SYS_ADMIN": 21,
    "CAP_AUDIT_WRITE": 29, "CAP_SETFCAP": 31,
}  # fmt: skip


class LegacyBwrap:
    """The bwrap command line before this change (root kept every capability)."""

    name = "legacy-bwrap"

    def argv(self, inv: Invocation, fds: Fds) -> list[str]:
        root_flag = "--ro-bind" if inv.read_only else "--bind"
        out = [proc.which("bwrap"), root_flag, str(inv.rootfs), "/"]
        out += ["--proc", "/proc", "--dev", "/dev"]
        for path in inv.tmpfs:
            out += ["--perms", "1777", "--tmpfs", path]
        out += ["--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
        if not inv.network:
            out.append("--unshare-net")
        for m in inv.mounts:
            out += ["--ro-bind" if m.read_only else "--bind", str(m.source), m.target]
        out += ["--clearenv", "--chdir", inv.cwd]
        for key, value in inv.env:
            out += ["--setenv", key, value]
        return [*out, "--", *inv.argv]


class LegacyChroot:
    """The chroot runner before this change: the default for root without bubblewrap."""

    name = "legacy-chroot"

    def argv(self, inv: Invocation, fds: Fds) -> list[str]:
        root = shlex.quote(str(inv.rootfs))
        lines = ["set -e", "mount --make-rprivate /"]
        if inv.read_only:
            lines.append(f"mount --bind {root} {root} && mount -o remount,bind,ro {root}")
        lines += [f"mount -t proc proc {root}/proc", f"mount --rbind /dev {root}/dev"]
        lines += [f"mount -t tmpfs -o mode=1777 tmpfs {root}{shlex.quote(p)}" for p in inv.tmpfs]
        for m in inv.mounts:
            target = f"{root}{shlex.quote(m.target)}"
            lines.append(f"mount --bind {shlex.quote(str(m.source))} {target}")
        inner = ["chroot", str(inv.rootfs), "/usr/bin/env", "-i", "/bin/sh", "-c",
                 'cd "$0" && exec "$@"', inv.cwd, *inv.argv]  # fmt: skip
        lines.append("exec " + shlex.join(inner))
        flags = ["--mount", "--fork", "--pid"] + ([] if inv.network else ["--net"])
        return [proc.which("unshare"), *flags, "/bin/sh", "-c", "\n".join(lines)]


class BwrapWithAdminCaps(Bwrap):
    """Today's runner given CAP_SYS_ADMIN and CAP_DAC_READ_SEARCH back: only the seccomp
    filter stands between the program and the escape."""

    def argv(self, inv: Invocation, fds: Fds) -> list[str]:
        out = super().argv(inv, fds)
        at = out.index("--cap-drop") + 2
        return [*out[:at], "--cap-add", "CAP_SYS_ADMIN", "--cap-add", "CAP_DAC_READ_SEARCH",
                *out[at:]]  # fmt: skip


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """/hostile, /bin/sh and /usr/bin/env with the host's C library."""
    root = tmp_path_factory.mktemp("hostile") / "rootfs"
    (root / "usr/bin").mkdir(parents=True)
    (root / "bin").symlink_to("usr/bin")
    proc.run(["gcc", "-static", "-O1", "-o", str(root / "hostile"), str(HOSTILE_C)])
    copy_programs(root, ("sh", "env"))
    for sub in ("proc", "dev", "tmp", "cache"):
        (root / sub).mkdir()
    return root


@pytest.fixture
def host(tmp_path: Path, rootfs: Path) -> Path:
    """A host directory outside every bind, on the same ext4 filesystem as the root."""
    directory = tmp_path / "host"
    directory.mkdir()
    assert os.stat(directory).st_dev == os.stat(rootfs).st_dev
    assert os.stat(fs_root(directory)).st_ino == 2, "the shocker attempt needs ext4's root"
    return directory


def fs_root(path: Path) -> Path:
    while path.parent != path and os.stat(path.parent).st_dev == os.stat(path).st_dev:
        path = path.parent
    return path


def in_fs(path: Path) -> str:
    """``path`` as seen from the root of its filesystem (what open_by_handle_at reaches)."""
    return "/" + str(path.relative_to(fs_root(path.parent)))


def invocation(rootfs: Path, kind: str, argv: tuple[str, ...], cache: Path) -> Invocation:
    """The shape of the build's invocations: verify/bytecode, or a system step."""
    if kind == "verify":
        mounts = (Mount(cache, "/cache"),)  # the declared output (bytecode cache)
        return Invocation(rootfs, argv, mounts=mounts, read_only=True)
    return Invocation(rootfs, argv, mounts=(Mount(cache, "/cache"),), privileges="system")


def attempt(
    runner: runners.Runner, rootfs: Path, kind: str, *args: str, network: bool = False
) -> proc.Result:
    cache = rootfs.parent / "cache"
    cache.mkdir(exist_ok=True)
    inv = invocation(rootfs, kind, ("/hostile", *args), cache)
    if network:
        inv = dataclasses.replace(inv, network=True)
    return runners.run(runner, inv)


KINDS = ["verify", "system"]
NEW = Bwrap()


@pytest.mark.parametrize("kind", KINDS)
def test_shocker_open_by_handle_at_cannot_write_on_the_host(
    rootfs: Path, host: Path, kind: str
) -> None:
    marker = host / f"shocker-{kind}"
    result = attempt(NEW, rootfs, kind, "handle", in_fs(marker))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "open_by_handle_at: Operation not permitted" in result.stdout
    assert not marker.exists()
    before = attempt(LegacyBwrap(), rootfs, kind, "handle", in_fs(marker))
    assert "ESCAPED" in before.stdout, before.stdout + before.stderr
    assert marker.read_text() == "escaped\n"


@pytest.mark.parametrize("kind", KINDS)
def test_mount_is_refused(rootfs: Path, kind: str) -> None:
    result = attempt(NEW, rootfs, kind, "mount")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "mount proc: Operation not permitted" in result.stdout
    assert "remount / rw: Operation not permitted" in result.stdout
    before = attempt(LegacyBwrap(), rootfs, kind, "mount")
    assert "ESCAPED: mounted a proc" in before.stdout
    assert "ESCAPED: remounted / read-write" in before.stdout


def test_seccomp_alone_refuses_handles_and_mounts(rootfs: Path, host: Path) -> None:
    """With CAP_SYS_ADMIN and CAP_DAC_READ_SEARCH given back, the filter still says no."""
    marker = host / "shocker-caps"
    result = attempt(BwrapWithAdminCaps(), rootfs, "system", "handle", in_fs(marker))
    assert "open_by_handle_at: Operation not permitted" in result.stdout
    assert not marker.exists()
    result = attempt(BwrapWithAdminCaps(), rootfs, "system", "mount")
    assert "mount proc: Operation not permitted" in result.stdout
    assert "ESCAPED" not in result.stdout


@pytest.mark.parametrize("kind", KINDS)
def test_writing_through_proc_root_of_a_host_process_fails(
    rootfs: Path, host: Path, kind: str
) -> None:
    marker = host / f"procroot-{kind}"
    result = attempt(NEW, rootfs, kind, "procroot", str(os.getpid()), str(marker))
    assert result.returncode == 1, result.stdout + result.stderr
    assert not marker.exists()
    before = attempt(LegacyChroot(), rootfs, kind, "procroot", str(os.getpid()), str(marker))
    assert "ESCAPED" in before.stdout, before.stdout + before.stderr
    assert marker.read_text() == "escaped\n"


class Server:
    """A TCP server on the host's 127.0.0.1 that records the first line of each client."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.got = threading.Event()
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen()
        self.socket.settimeout(0.2)
        self.port = int(self.socket.getsockname()[1])
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve)
        self.thread.start()

    def serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.socket.accept()
            except TimeoutError:
                continue
            with conn:
                self.received.append(conn.recv(100))
                self.got.set()

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.socket.close()


@contextlib.contextmanager
def tcp_server() -> Iterator[Server]:
    server = Server()
    try:
        yield server
    finally:
        server.close()


@pytest.mark.parametrize("kind", KINDS)
def test_no_network_when_the_step_has_none(rootfs: Path, kind: str) -> None:
    with tcp_server() as server:
        port = str(server.port)
        result = attempt(NEW, rootfs, kind, "net", str(os.getpid()), port)
        assert result.returncode == 1, result.stdout + result.stderr
        before = attempt(LegacyChroot(), rootfs, kind, "net", str(os.getpid()), port)
        assert "ESCAPED" in before.stdout, before.stdout + before.stderr
        assert server.got.wait(30)
        assert server.received == [b"hello\n"]  # the legacy client only


def test_network_when_a_system_step_asks_for_it(rootfs: Path) -> None:
    with tcp_server() as server:
        result = attempt(NEW, rootfs, "system", "net", "1", str(server.port), network=True)
        assert "connected to port" in result.stdout
        assert server.got.wait(30)
        assert server.received == [b"hello\n"]


@pytest.mark.parametrize("kind", KINDS)
def test_host_files_outside_the_binds_cannot_be_read(rootfs: Path, host: Path, kind: str) -> None:
    secret = host / "secret"
    token = uuid.uuid4().hex
    secret.write_text(token)
    result = attempt(NEW, rootfs, kind, "read", in_fs(secret))
    assert result.returncode == 1, result.stdout + result.stderr
    assert token not in result.stdout
    before = attempt(LegacyBwrap(), rootfs, kind, "read", in_fs(secret))
    assert token in before.stdout


@pytest.mark.parametrize("kind", KINDS)
def test_capabilities_inside(rootfs: Path, kind: str) -> None:
    result = attempt(NEW, rootfs, kind, "capeff")
    capeff = int(result.stdout.split()[1], 16)
    if kind == "verify":
        assert capeff == 0
    else:
        assert capeff == sum(1 << CAP_BITS[cap] for cap in SYSTEM_CAPS)
    before = attempt(LegacyBwrap(), rootfs, kind, "capeff")
    assert int(before.stdout.split()[1], 16) & (1 << CAP_BITS["CAP_SYS_ADMIN"])


@pytest.mark.parametrize("kind", KINDS)
def test_global_kernel_settings_are_read_only(rootfs: Path, kind: str) -> None:
    """Root of the sandbox is the host's uid 0, to which /proc/sys grants writes by file
    mode: kernel.core_pattern would run any program as root on the host. (The attempt
    writes the current value back: nothing changes on the host.)"""
    result = attempt(NEW, rootfs, kind, "sysctl")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Read-only file system" in result.stdout
    before = attempt(LegacyBwrap(), rootfs, kind, "sysctl")
    assert "ESCAPED: wrote kernel.core_pattern" in before.stdout


def processes_with(token: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if token.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
    return found


def describe(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/status").read_text()
    return "gone"


@pytest.mark.parametrize("kind", KINDS)
def test_no_process_outlives_the_step(rootfs: Path, kind: str) -> None:
    """The daemon (double fork, setsid, sleep 600) is alive when the step's main process
    ends, and gone from the host once the run returns. (Before this change the pid
    namespace of both runners already ended it: see docs/sandbox.md.)"""
    token = f"lf-daemon-{uuid.uuid4().hex}"
    try:
        result = attempt(NEW, rootfs, kind, "daemon", str(os.getpid()), token)
        assert "daemon alive" in result.stdout, result.stdout + result.stderr
        left = {pid: describe(pid) for pid in processes_with(token)}
        assert left == {}
    finally:
        for pid in processes_with(token):
            os.kill(pid, signal.SIGKILL)


STARTUP_CODE = """
import builtins, ctypes, os

ESCAPES = []
libc = ctypes.CDLL(None, use_errno=True)
for line in open("/proc/self/status"):
    if line.startswith("CapEff:") and int(line.split()[1], 16):
        ESCAPES.append("capabilities " + line.split()[1])


class Handle(ctypes.Structure):
    _fields_ = [("size", ctypes.c_uint), ("type", ctypes.c_int),
                ("ino", ctypes.c_uint), ("gen", ctypes.c_uint)]


root = libc.open_by_handle_at(os.open("/", os.O_RDONLY), ctypes.byref(Handle(8, 1, 2, 0)),
                              os.O_RDONLY | os.O_DIRECTORY)
if root >= 0:
    ESCAPES.append("open_by_handle_at")
    libc.mount(None, b"/", None, 32 | 4096, None)  # MS_REMOUNT | MS_BIND: read-write
    try:
        fd = os.open(MARKER, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=root)
        os.write(fd, b"escaped\\n")
        ESCAPES.append("wrote a host file")
    except OSError:
        pass
if libc.mount(b"proc", b"/tmp", b"proc", 0, None) == 0:
    ESCAPES.append("mount")
builtins.LF_ESCAPES = ESCAPES
"""

HOSTILE_PROJECT = """
[project]
name = "hostile"
python = "3.11"

[bases.evil]
from = { debootstrap = "bookworm" }
network = false
context = "evil"
run = ["cp /context/lf_hostile.py /context/lf_hostile.pth /opt/venv/lib/python3.11/site-packages/"]
verify = ["import builtins; assert builtins.LF_ESCAPES == [], builtins.LF_ESCAPES"]
"""


def test_a_base_whose_python_wants_out_is_verified_without_escaping(
    tmp_path: Path, host: Path, shared_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's report, end to end: code a base runs whenever the image's Python starts
    (a ``.pth`` file: Debian's own sitecustomize.py comes first on sys.path) tries, during
    verify, the shocker, a remount and a mount. `build` (which verifies) passes
    and no host file is written; the same verify with the old bwrap runner fails, listing
    what got out, and the host file is there."""
    marker = host / "from-sitecustomize"
    project = tmp_path / "project"
    (project / "evil").mkdir(parents=True)
    code = f"MARKER = {in_fs(marker).lstrip('/')!r}\n" + STARTUP_CODE
    (project / "evil" / "lf_hostile.py").write_text(code)
    (project / "evil" / "lf_hostile.pth").write_text("import lf_hostile\n")
    (project / "layerforge.toml").write_text(HOSTILE_PROJECT)
    common = ["-f", str(project), "--cache-dir", str(shared_cache)]
    assert main(["lock", *common]) == 0
    assert main(["build", *common]) == 0
    assert not marker.exists()

    monkeypatch.setitem(runners.RUNNERS, "legacy", LegacyBwrap)
    monkeypatch.setitem(runners.TOOLS, "legacy", "bwrap")
    ws = api.Workspace(project / "layerforge.toml", project / ".layerforge", shared_cache)
    with pytest.raises(VerifyError) as err:
        verify_project(api.load_project(ws), ws, ["evil"], None, "legacy")
    assert "open_by_handle_at" in str(err.value) and "wrote a host file" in str(err.value)
    assert marker.read_text() == "escaped\n"
