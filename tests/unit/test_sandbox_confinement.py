"""The sandbox's confinement, without running anything: the seccomp program (decoded and
run by a classic-BPF interpreter written here), and the policy in the runners' command lines.
The escapes themselves are tried for real in tests/integration/test_sandbox_escape.py."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

from layerforge.errors import ToolError
from layerforge.sandbox import seccomp
from layerforge.sandbox.runner import (
    SYSTEM_CAPS,
    Bwrap,
    Fds,
    Invocation,
    Mount,
    Podman,
    get_runner,
)

UNISTD = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")
CLONE_NEWUSER = 0x10000000
CLONE_NEWNS = 0x00020000
FORK_FLAGS = 0x01200011  # CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID | SIGCHLD (glibc fork)
THREAD_FLAGS = 0x003D0F00  # pthread_create's clone flags


def run_filter(
    program: bytes, nr: int, arch: int = seccomp.AUDIT_ARCH_X86_64, args: tuple[int, ...] = ()
) -> int:
    """Execute a classic BPF seccomp program on one struct seccomp_data: the action."""
    full = (*args, *([0] * (6 - len(args))))
    data = struct.pack("=iIQ6Q", nr, arch, 0, *full)
    insns: list[tuple[int, int, int, int]] = [
        struct.unpack("=HBBI", program[i : i + 8]) for i in range(0, len(program), 8)
    ]
    acc, pc = 0, 0
    while True:
        code, jt, jf, k = insns[pc]
        if code == seccomp.LD_W_ABS:
            assert k % 4 == 0 and k + 4 <= len(data)
            acc = int.from_bytes(data[k : k + 4], "little")
            pc += 1
        elif code in (seccomp.JEQ_K, seccomp.JGE_K, seccomp.JSET_K):
            taken = {
                seccomp.JEQ_K: acc == k,
                seccomp.JGE_K: acc >= k,
                seccomp.JSET_K: bool(acc & k),
            }[code]
            pc += 1 + (jt if taken else jf)
        elif code == seccomp.RET_K:
            return k
        else:
            raise AssertionError(f"unexpected opcode {code:#x} at {pc}")
        assert pc < len(insns), "jumped past the end"


def syscall_numbers() -> dict[str, int]:
    text = UNISTD.read_text()
    return {name: int(nr) for name, nr in re.findall(r"#define __NR_(\w+) (\d+)", text)}


EPERM = seccomp.RET_ERRNO | seccomp.EPERM
ENOSYS = seccomp.RET_ERRNO | seccomp.ENOSYS


def test_filter_numbers_are_the_kernel_headers_numbers() -> None:
    numbers = syscall_numbers()
    assert {name: numbers.get(name) for name in seccomp.DENIED} == seccomp.DENIED
    assert numbers["clone"] == seccomp.NR_CLONE and numbers["clone3"] == seccomp.NR_CLONE3


@pytest.mark.parametrize(
    "name",
    ["open_by_handle_at", "name_to_handle_at", "mount", "umount2", "pivot_root", "ptrace",
     "keyctl", "add_key", "request_key", "bpf", "setns", "unshare", "perf_event_open",
     "process_vm_readv", "process_vm_writev", "init_module", "finit_module", "kexec_load",
     "reboot", "userfaultfd", "fsopen", "fsmount", "open_tree", "move_mount",
     "mount_setattr", "io_uring_setup", "iopl", "ioperm", "swapon", "syslog", "acct"],
)  # fmt: skip
def test_filter_refuses_what_container_runtimes_refuse(name: str) -> None:
    program = seccomp.compile_filter()
    assert run_filter(program, syscall_numbers()[name]) == EPERM


@pytest.mark.parametrize(
    "name",
    ["read", "write", "openat", "execve", "mmap", "chown", "fchownat", "setresuid", "chroot",
     "socket", "connect", "wait4", "exit_group", "getdents64", "statx", "prctl", "seccomp"],
)  # fmt: skip
def test_filter_allows_what_programs_need(name: str) -> None:
    assert run_filter(seccomp.compile_filter(), syscall_numbers()[name]) == seccomp.RET_ALLOW


def test_filter_refuses_new_namespaces_through_clone_and_sends_clone3_to_clone() -> None:
    program = seccomp.compile_filter()
    assert run_filter(program, seccomp.NR_CLONE, args=(FORK_FLAGS,)) == seccomp.RET_ALLOW
    assert run_filter(program, seccomp.NR_CLONE, args=(THREAD_FLAGS,)) == seccomp.RET_ALLOW
    assert run_filter(program, seccomp.NR_CLONE, args=(FORK_FLAGS | CLONE_NEWUSER,)) == EPERM
    assert run_filter(program, seccomp.NR_CLONE, args=(CLONE_NEWNS,)) == EPERM
    assert run_filter(program, seccomp.NR_CLONE3) == ENOSYS


def test_filter_kills_other_abis_and_refuses_x32() -> None:
    program = seccomp.compile_filter()
    audit_arch_i386 = 0x40000003
    assert run_filter(program, 1, arch=audit_arch_i386) == seccomp.RET_KILL_PROCESS
    x32_open_by_handle = seccomp.X32_SYSCALL_BIT | 304
    assert run_filter(program, x32_open_by_handle) == ENOSYS


def test_filter_is_whole_sock_filter_structs() -> None:
    program = seccomp.compile_filter()
    assert len(program) % 8 == 0 and len(program) // 8 == len(seccomp.program()) < 4096


VERIFY = Invocation(
    rootfs=Path("/r"),
    argv=("/opt/venv/bin/python", "-c", "pass"),
    mounts=(Mount(Path("/host/pyc"), "/var/cache/pyc"),),
    read_only=True,
)
SYSTEM = Invocation(
    rootfs=Path("/r"), argv=("/bin/sh", "-c", "apt-get update"), network=True, privileges="system"
)


FDS = Fds(seccomp=9, info=10)


def caps_added(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == "--cap-add"]


def test_an_invocation_has_no_network_unless_it_asks() -> None:
    assert Invocation(Path("/r"), ("true",)).network is False


def test_bwrap_without_privileges_is_a_user_namespace_without_capabilities() -> None:
    argv = Bwrap().argv(VERIFY, FDS)
    assert argv[1:4] == ["--unshare-all", "--unshare-user", "--uid"]
    assert "--share-net" not in argv and "--cap-add" not in argv
    assert argv[argv.index("--cap-drop") + 1] == "ALL"
    assert argv[argv.index("--seccomp") + 1] == "9"
    assert argv[argv.index("--info-fd") + 1] == "10"
    assert "--new-session" in argv and "--die-with-parent" in argv
    assert "/etc/resolv.conf" not in argv  # bound only with the network


def test_bwrap_system_steps_are_root_with_a_small_set_of_capabilities() -> None:
    argv = Bwrap().argv(SYSTEM, FDS)
    assert "--unshare-user" not in argv and "--unshare-all" not in argv
    assert {"--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup"} <= set(argv)
    assert "--unshare-net" not in argv  # it asked for the network
    assert argv[argv.index("--cap-drop") + 1] == "ALL"
    added = caps_added(argv)
    assert added == list(SYSTEM_CAPS)
    for never in ("CAP_SYS_ADMIN", "CAP_DAC_READ_SEARCH", "CAP_MKNOD", "CAP_SYS_PTRACE"):
        assert never not in added
    offline = Bwrap().argv(Invocation(Path("/r"), ("true",), privileges="system"), FDS)
    assert "--unshare-net" in offline and "/etc/resolv.conf" not in offline


def test_bwrap_binds_nothing_writable_but_the_declared_mounts() -> None:
    argv = Bwrap().argv(VERIFY, FDS)
    read_only = [argv[i + 1] for i, a in enumerate(argv) if a == "--ro-bind-try"]
    assert {"/proc/sys", "/proc/sysrq-trigger"} <= set(read_only)
    assert argv.index("--ro-bind-try") > argv.index("--proc")  # over the new /proc
    writable = [argv[i + 1] for i, a in enumerate(argv) if a == "--bind"]
    assert writable == ["/host/pyc"]
    assert "--dev-bind" not in argv


def test_podman_drops_capabilities_and_new_privileges() -> None:
    argv = Podman().argv(VERIFY, FDS)
    assert "--cap-drop=all" in argv and "no-new-privileges" in argv
    assert argv[argv.index("--network") + 1] == "none"
    assert not [a for a in argv if a.startswith("--cap-add")]
    system = [a for a in Podman().argv(SYSTEM, FDS) if a.startswith("--cap-add")]
    assert system == [f"--cap-add={cap}" for cap in SYSTEM_CAPS]


def test_no_silent_fallback_to_an_unconfined_runner(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without bubblewrap the default is an error with the install command, never chroot
    (which keeps every capability of root)."""
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ToolError) as err:
        get_runner()
    assert "apt-get install -y bubblewrap" in str(err.value)
