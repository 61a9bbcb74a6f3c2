"""The seccomp filter every sandboxed program runs under, as a classic BPF program.

bubblewrap loads it with ``--seccomp FD`` (an array of ``struct sock_filter``), just before it
runs the program. It refuses (``EPERM``) the system calls container runtimes refuse by
default (modelled on moby's default profile): getting at files by handle
(``open_by_handle_at``, the "shocker" escape), mounting and the new mount API, namespaces
(``setns``, ``unshare``, ``clone`` with a ``CLONE_NEW*`` flag), tracing and reading other
processes (``ptrace``, ``process_vm_*``), the kernel keyring, bpf, perf, kernel modules,
kexec, reboot, swap, clocks, raw I/O ports, ``userfaultfd``, ``io_uring``, and sockets of
the ``AF_VSOCK`` family (to the hypervisor of a virtual machine, which the network
namespace may not confine). ``clone3``
answers ``ENOSYS`` (its flags live in memory a filter cannot read), so that the C library
falls back to ``clone``. Everything else is allowed.

Only x86-64 is built: a call made through another ABI (i386 ``int 0x80``) kills the process,
an x32 call (``nr >= 0x40000000``) answers ``ENOSYS``. :func:`host_supported` says whether
this machine can use it.
"""

from __future__ import annotations

import platform
import struct
from dataclasses import dataclass

AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000
EPERM = 1
ENOSYS = 38

# seccomp return values
RET_KILL_PROCESS = 0x80000000
RET_ERRNO = 0x00050000
RET_ALLOW = 0x7FFF0000

# classic BPF opcodes
LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
JGE_K = 0x35  # BPF_JMP | BPF_JGE | BPF_K
JSET_K = 0x45  # BPF_JMP | BPF_JSET | BPF_K
RET_K = 0x06  # BPF_RET | BPF_K

# offsets in struct seccomp_data
OFFSET_NR = 0
OFFSET_ARCH = 4
OFFSET_ARG0_LOW = 16  # args[0], low 32 bits (little-endian)

# CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET (not NEWTIME: in
# clone(2), 0x80 is part of the exit signal)
CLONE_NEW_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000
CLONE_NEW_FLAGS |= 0x40000000

NR_CLONE = 56
NR_CLONE3 = 435
NR_SOCKET = 41
AF_VSOCK = 40  # sockets to the hypervisor, which the network namespace may not confine

# x86-64 numbers (arch/x86/entry/syscalls/syscall_64.tbl) of the refused calls.
DENIED: dict[str, int] = {
    "ptrace": 101,
    "syslog": 103,
    "uselib": 134,
    "vhangup": 153,
    "modify_ldt": 154,
    "pivot_root": 155,
    "_sysctl": 156,
    "adjtimex": 159,
    "acct": 163,
    "settimeofday": 164,
    "mount": 165,
    "umount2": 166,
    "swapon": 167,
    "swapoff": 168,
    "reboot": 169,
    "iopl": 172,
    "ioperm": 173,
    "create_module": 174,
    "init_module": 175,
    "delete_module": 176,
    "get_kernel_syms": 177,
    "query_module": 178,
    "quotactl": 179,
    "nfsservctl": 180,
    "lookup_dcookie": 212,
    "clock_settime": 227,
    "vserver": 236,
    "kexec_load": 246,
    "add_key": 248,
    "request_key": 249,
    "keyctl": 250,
    "unshare": 272,
    "move_pages": 279,
    "perf_event_open": 298,
    "fanotify_init": 300,
    "name_to_handle_at": 303,
    "open_by_handle_at": 304,
    "clock_adjtime": 305,
    "setns": 308,
    "process_vm_readv": 310,
    "process_vm_writev": 311,
    "kcmp": 312,
    "finit_module": 313,
    "kexec_file_load": 320,
    "bpf": 321,
    "userfaultfd": 323,
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "fspick": 433,
    "pidfd_getfd": 438,
    "mount_setattr": 442,
    "quotactl_fd": 443,
}
# Allowed although moby filters them: ``chroot`` (bubblewrap pivots into the new root and
# detaches the old one, so a chroot leads nowhere) and ``personality``.


@dataclass(frozen=True)
class Insn:
    """One ``struct sock_filter``."""

    code: int
    jt: int
    jf: int
    k: int


# An instruction before assembly: (code, label if true, label if false, k); a bare string
# is a label for the next instruction.
_Op = tuple[int, str | None, str | None, int]


def _source() -> list[_Op | str]:
    denied = sorted(set(DENIED.values()))
    return [
        (LD_W_ABS, None, None, OFFSET_ARCH),
        (JEQ_K, None, "kill", AUDIT_ARCH_X86_64),
        (LD_W_ABS, None, None, OFFSET_NR),
        (JGE_K, "enosys", None, X32_SYSCALL_BIT),
        *((JEQ_K, "eperm", None, nr) for nr in denied),
        (JEQ_K, "clone", None, NR_CLONE),
        (JEQ_K, "socket", None, NR_SOCKET),
        (JEQ_K, "enosys", "allow", NR_CLONE3),
        "clone",
        (LD_W_ABS, None, None, OFFSET_ARG0_LOW),
        (JSET_K, "eperm", "allow", CLONE_NEW_FLAGS),
        "socket",
        (LD_W_ABS, None, None, OFFSET_ARG0_LOW),
        (JEQ_K, "eperm", "allow", AF_VSOCK),
        "allow",
        (RET_K, None, None, RET_ALLOW),
        "eperm",
        (RET_K, None, None, RET_ERRNO | EPERM),
        "enosys",
        (RET_K, None, None, RET_ERRNO | ENOSYS),
        "kill",
        (RET_K, None, None, RET_KILL_PROCESS),
    ]


def program() -> list[Insn]:
    """The filter, instruction by instruction (jumps resolved)."""
    labels: dict[str, int] = {}
    ops: list[_Op] = []
    for item in _source():
        if isinstance(item, str):
            labels[item] = len(ops)
        else:
            ops.append(item)
    return [
        Insn(code, _offset(labels, jt, i), _offset(labels, jf, i), k)
        for i, (code, jt, jf, k) in enumerate(ops)
    ]


def _offset(labels: dict[str, int], label: str | None, index: int) -> int:
    if label is None:
        return 0
    offset = labels[label] - index - 1
    if not 0 <= offset <= 255:
        raise ValueError(f"seccomp jump to {label} out of range ({offset})")
    return offset


def compile_filter() -> bytes:
    """The program as bubblewrap reads it: ``struct sock_filter`` (u16, u8, u8, u32) each."""
    return b"".join(struct.pack("=HBBI", i.code, i.jt, i.jf, i.k) for i in program())


def host_supported() -> bool:
    """True on x86-64, the one architecture the filter is built for."""
    return platform.machine() in ("x86_64", "AMD64")
