"""The seccomp filter refuses AF_VSOCK sockets (the hypervisor is not behind the sandbox's
network namespace) and nothing else of socket()."""

from __future__ import annotations

import socket

from layerforge.sandbox import seccomp
from tests.unit.test_sandbox_confinement import EPERM, run_filter


def test_filter_refuses_vsock_sockets_only() -> None:
    program = seccomp.compile_filter()
    assert run_filter(program, seccomp.NR_SOCKET, args=(seccomp.AF_VSOCK,)) == EPERM
    for family in (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX, socket.AF_NETLINK):
        assert run_filter(program, seccomp.NR_SOCKET, args=(family,)) == seccomp.RET_ALLOW
    assert socket.AF_VSOCK == seccomp.AF_VSOCK
