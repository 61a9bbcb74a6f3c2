"""Issue 14 item 2: the bwrap command line of a check run as the image's user."""

from __future__ import annotations

import os
from pathlib import Path

from layerforge.sandbox.runner import Bwrap, Fds, Invocation, drops_to_user


def _argv(inv: Invocation) -> list[str]:
    return Bwrap().argv(inv, Fds(3, 4))


def test_as_root_no_user_namespace_and_a_setuid_drop(tmp_path: Path) -> None:
    assert os.geteuid() == 0  # this suite runs as root, as CI does
    inv = Invocation(tmp_path, ("id", "-u"), user=(10001, 10002))
    argv = _argv(inv)
    assert "--unshare-user" not in argv and "--unshare-all" not in argv
    assert {"--unshare-net", "--unshare-pid", "--unshare-ipc"} <= set(argv)
    caps = [argv[i + 1] for i, a in enumerate(argv) if a == "--cap-add"]
    assert caps == ["CAP_SETUID", "CAP_SETGID"]
    tail = argv[argv.index("--") + 1 :]
    assert tail[:4] == ["/opt/venv/bin/python", "-I", "-S", "-c"]
    assert "os.setgroups([]); os.setgid(10002); os.setuid(10001)" in tail[4]
    assert tail[5:] == ["id", "-u"]


def test_root_user_or_no_user_keeps_todays_command_line(tmp_path: Path) -> None:
    plain = _argv(Invocation(tmp_path, ("true",)))
    assert _argv(Invocation(tmp_path, ("true",), user=(0, 0))) == plain
    assert plain[plain.index("--") + 1 :] == ["true"]
    assert "--cap-add" not in plain
    assert plain[1:7] == ["--unshare-all", "--unshare-user", "--uid", "0", "--gid", "0"]


def test_not_root_maps_the_caller_to_the_user() -> None:
    inv = Invocation(Path("/"), ("true",), user=(10001, 10001))
    assert drops_to_user(inv, euid=0)
    assert not drops_to_user(inv, euid=1000)  # a one-uid namespace instead (with a warning)
    assert not drops_to_user(
        Invocation(Path("/"), ("true",), user=(10001, 1), privileges="system"), euid=0
    )
