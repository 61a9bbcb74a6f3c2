"""The Dockerfile lines of ``user``, ``writable``, ``expose`` and ``healthcheck``.

- A node below a non-root base starts with ``USER root``: its RUNs (apt, pip) run as root,
  as our builder's steps do.
- A node with its own non-root user gets one ``RUN`` where our builder puts its user layer
  (after the system step, before the installs) that creates the user when the image lacks
  that uid (``groupadd``/``useradd``, no skeleton files: our user layer has none), its home
  (0750), and the writable directories (0755), owned by the user.
- Last, before the source: ``USER UID:GID`` (numeric, as our config), ``EXPOSE`` and
  ``HEALTHCHECK`` (exec form as JSON; ``NONE`` for ``healthcheck = false``).
"""

from __future__ import annotations

import json
import shlex

from layerforge.manifest import Node
from layerforge.manifest.nonroot import format_duration


def reset_lines(node: Node) -> list[str]:
    """After FROM: back to root below a non-root base, for the RUNs that follow."""
    if node.user is not None and node.user.inherited and not node.user.is_root:
        return ["# the base runs as its user; this image's own steps run as root", "USER root", ""]
    return []


def user_run(node: Node) -> list[str]:
    """The RUN that makes what our builder's user layer holds (none: no lines)."""
    user = node.user
    owner = f"-o {user.uid} -g {user.gid}" if user is not None else "-o 0 -g 0"
    commands: list[str] = []
    if user is not None and not user.inherited and not user.is_root:
        name = shlex.quote(user.login)
        home = shlex.quote(user.home)
        commands.append(
            f"if ! getent passwd {user.uid} >/dev/null; then "
            f"(getent group {user.gid} >/dev/null || groupadd --gid {user.gid} {name}) "
            f"&& useradd --uid {user.uid} --gid {user.gid} --no-create-home --home-dir {home} "
            f"--shell /usr/sbin/nologin {name} "
            f"&& install -d -m 0750 {owner} {home}; fi"
        )
    if node.writable:
        paths = " ".join(shlex.quote(p) for p in node.writable)
        commands.append(f"install -d -m 0755 {owner} {paths}")
    if not commands:
        return []
    who = f"user {user.login} ({user.spec})" if user is not None else "root"
    return [
        f"# {node.section}: {who} and its writable directories (layerforge's user layer)",
        "RUN " + " \\\n    && ".join(commands),
        "",
    ]


def config_lines(node: Node) -> list[str]:
    """USER, EXPOSE and HEALTHCHECK (before the source, after every RUN)."""
    lines: list[str] = []
    user = node.user
    if user is not None and (not user.inherited or not user.is_root):
        lines.append(f"USER {user.spec}")
    if node.expose:
        lines.append("EXPOSE " + " ".join(node.expose))
    check = node.healthcheck
    if check is not None:
        if check.test == ("NONE",):
            lines.append("HEALTHCHECK NONE")
        else:
            options = [
                f"--{flag}={format_duration(value)}"
                for flag, value in (
                    ("interval", check.interval),
                    ("timeout", check.timeout),
                    ("start-period", check.start_period),
                )
                if value is not None
            ]
            if check.retries is not None:
                options.append(f"--retries={check.retries}")
            kind, *argv = check.test
            command = json.dumps(argv) if kind == "CMD" else argv[0]
            lines.append("HEALTHCHECK " + " ".join([*options, "CMD", command]))
    return lines
