"""``layerforge run`` and ``layerforge load``: use a built image on this machine."""

from __future__ import annotations

from pathlib import Path

import click

from layerforge.cli import options as c


def _env_pairs(values: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    pairs = []
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{value!r} is not KEY=VALUE", param_hint="-e/--env")
        pairs.append((key, rest))
    return tuple(pairs)


@click.command(context_settings={"allow_interspersed_args": False})
@c.common
@click.argument("node")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("-e", "--env", "env", multiple=True, help="KEY=VALUE added to the image's Env.")
@click.option(
    "--mount-cwd", is_flag=True, help="Bind the current directory read-write in the image."
)
@click.option(
    "--mount-at",
    default="/src",
    show_default=True,
    metavar="PATH",
    help="Where --mount-cwd binds it (an absolute path).",
)
@click.option("--no-network", is_flag=True, help="An isolated network (default: the host's).")
@c.runner_option
def run(
    manifest: Path | None,
    store: Path | None,
    cache_dir: Path | None,
    as_json: bool,
    node: str,
    command: tuple[str, ...],
    env: tuple[str, ...],
    mount_cwd: bool,
    mount_at: str,
    no_network: bool,
    runner: str | None,
) -> None:
    """Run NODE's image in the sandbox: its Entrypoint with COMMAND, or its Cmd; options
    go before NODE, everything after it (an optional `--` first) is COMMAND; the image's
    Env and WorkingDir apply, its root is read-only (a tmpfs at /tmp), the ports it listens
    on are the host's, and the exit code is the program's (see docs/local.md)."""
    from layerforge import api  # noqa: PLC0415

    if not mount_at.startswith("/"):
        raise click.BadParameter(f"{mount_at!r} is not an absolute path", param_hint="--mount-at")
    if command[:1] == ("--",):  # options end at NODE; a `--` after it is optional
        command = command[1:]
    ws = c.workspace(manifest, store, cache_dir)
    project = api.load_project(ws)
    options = api.RunOptions(
        command=command,
        env=_env_pairs(env),
        mount_cwd=Path.cwd() if mount_cwd else None,
        mount_at=mount_at,
        network=not no_network,
        runner=runner,
    )
    code = api.run_node(project, ws, node, options, c.reporter(as_json))
    raise click.exceptions.Exit(code)


@click.command()
@c.common
@click.argument("node")
@click.option(
    "--into",
    type=click.Choice(["podman", "docker"]),
    default=None,
    help="The engine to load into (default: podman if installed, else docker).",
)
@click.option("--tag", default="latest", show_default=True, help="Tag of NODE in the store.")
def load(
    manifest: Path | None,
    store: Path | None,
    cache_dir: Path | None,
    as_json: bool,
    node: str,
    into: str | None,
    tag: str,
) -> None:
    """Load NODE into podman or docker (`ENGINE load`), its manifest digest kept."""
    from layerforge import api  # noqa: PLC0415

    ws = c.workspace(manifest, store, cache_dir)
    project = api.load_project(ws)
    project.select([node])
    loaded = api.load_node(project, api.open_store(ws.store), node, tag, into)
    doc = {"engine": loaded.engine, "image": loaded.image, "digest": loaded.digest,
           "engine_id": loaded.engine_id}  # fmt: skip
    if as_json:
        c.emit_json(doc)
    else:
        click.echo(f"loaded {loaded.image} into {loaded.engine}: {loaded.digest}")


LOCAL_COMMANDS = [run, load]
