"""``layerforge run``: an image's program on this machine, in the sandbox, without an engine.

The image is the unpacked root filesystem that verify uses (a shared cache, so read-only,
with a tmpfs at /tmp), run with the config's Env (plus ``-e``), WorkingDir and
``Entrypoint + (the command given, or Cmd)``, through a :mod:`~layerforge.sandbox.runner`
with the program on the caller's terminal; its exit code is the run's. With the network
(the default) the sandbox shares the host's: a server listening on a port of the sandbox
listens on that port of the host, so there is nothing to publish. The current directory
can be bound read-write at a path of the image (``--mount-cwd``).

The user: the config's ``User`` is what a container engine runs the program as. The
runners of this build run a program as root of a user namespace (bwrap) and cannot switch
to another uid yet, so an image with a non-root ``User`` runs as root here, with a warning
that says so; ``HOME`` is that user's home from the image's ``/etc/passwd`` all the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from layerforge.errors import UsageError
from layerforge.events import Event, Reporter
from layerforge.manifest import Node
from layerforge.oci.layout import Store
from layerforge.records import ImageRecord
from layerforge.sandbox import runner as runners
from layerforge.sandbox.verify import image_root

ROOT_USERS = ("", "0", "root", "0:0", "root:root", "root:0", "0:root")


@dataclass(frozen=True)
class RunOptions:
    command: tuple[str, ...] = ()  # instead of the image's Cmd (after its Entrypoint)
    env: tuple[tuple[str, str], ...] = ()  # on top of the image's Env
    mount_cwd: Path | None = None  # bound read-write at ``mount_at``
    mount_at: str = "/src"
    network: bool = True
    runner: str | None = None


def program(config: Mapping[str, object], command: tuple[str, ...], node: str) -> tuple[str, ...]:
    """``Entrypoint + (command or Cmd)``, as a container engine runs it."""
    entrypoint = [str(x) for x in config.get("Entrypoint") or []]  # type: ignore[attr-defined]
    cmd = list(command) or [str(x) for x in config.get("Cmd") or []]  # type: ignore[attr-defined]
    argv = (*entrypoint, *cmd)
    if not argv:
        raise UsageError(
            f"{node}: its image has neither an Entrypoint nor a Cmd: nothing to run",
            hint=f"give the command after --: `layerforge run {node} -- python -m yourapp`",
        )
    return argv


def home_of(rootfs: Path, user: str) -> str:
    """The home of ``user`` (a name or uid, maybe with ``:group``) in the image's
    ``/etc/passwd``; ``/root`` for root or an unknown user."""
    name = user.partition(":")[0]
    if name in ("", "0", "root"):
        return "/root"
    try:
        lines = (rootfs / "etc/passwd").read_text(errors="replace").splitlines()
    except OSError:
        return "/root"
    for line in lines:
        fields = line.split(":")
        if len(fields) >= 6 and name in (fields[0], fields[2]):
            return fields[5] or "/"
    return "/root"


def run_image(
    store: Store,
    record: ImageRecord,
    node: Node,
    cache_dir: Path,
    reporter: Reporter,
    options: RunOptions,
) -> int:
    """Run the program of ``record`` (see the module); returns its exit code."""
    platform = f"{record.config.get('os')}/{record.config.get('architecture')}"
    if platform != "linux/amd64":
        raise UsageError(
            f"{node.name}: its image is for {platform}; `layerforge run` runs linux/amd64 "
            "images only"
        )
    config = record.config.get("config") or {}
    argv = program(config, options.command, node.name)
    root = image_root(store, record, node, cache_dir)
    user = str(config.get("User") or "")
    if user not in ROOT_USERS:
        reporter.emit(
            Event("warning", f"run:{node.name}", f"{node.name}: the image runs as user "
                  f"{user!r}, but this sandbox runner runs programs as root (uid 0 of a user "
                  "namespace); files and permissions are not checked as that user")
        )  # fmt: skip
    env = dict(str(e).partition("=")[::2] for e in config.get("Env") or [])
    env.setdefault("HOME", home_of(root.rootfs, user))
    env.update(options.env)
    mounts = list(root.mounts)
    if options.mount_cwd is not None:
        mounts.append(runners.Mount(options.mount_cwd, options.mount_at))
    inv = runners.Invocation(
        rootfs=root.rootfs,
        argv=argv,
        env=tuple(env.items()),
        mounts=tuple(mounts),
        network=options.network,
        read_only=True,
        cwd=str(config.get("WorkingDir") or "/"),
    )
    reporter.emit(Event("info", f"run:{node.name}", f"run {node.name}: {' '.join(argv)}"))
    return runners.run_attached(runners.get_runner(options.runner), inv)
