"""``layerforge lock``: resolve every node with uv and write layerforge.lock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from layerforge.cli import options as c
from layerforge.cli import runtime as rt
from layerforge.sizes import format_size


@click.command()
@c.common
@click.option("--check", is_flag=True, help="Exit 2 if layerforge.lock is stale; write nothing.")
@click.option("--upgrade", is_flag=True, help="Re-resolve every node to the newest versions.")
@click.option(
    "--upgrade-package",
    "-P",
    "upgrade_packages",
    multiple=True,
    metavar="NAME",
    help="Let only this package move (repeatable).",
)
@click.option(
    "--upgrade-os",
    is_flag=True,
    help="Lock the Debian packages (debootstrap roots, system steps) again, as served now.",
)
def lock(
    manifest: Path | None,
    store: Path | None,
    cache_dir: Path | None,
    as_json: bool,
    check: bool,
    upgrade: bool,
    upgrade_packages: tuple[str, ...],
    upgrade_os: bool,
) -> None:
    """Resolve every node with uv and write layerforge.lock."""
    from layerforge import api  # noqa: PLC0415
    from layerforge.errors import LockError, UsageError  # noqa: PLC0415

    if check and (upgrade or upgrade_packages or upgrade_os):
        flag = "--upgrade" if upgrade else "--upgrade-os" if upgrade_os else "--upgrade-package"
        raise UsageError(
            f"--check cannot be combined with {flag}",
            hint="--check only compares the lock with the manifest; drop one of them",
        )
    ws = c.workspace(manifest, store, cache_dir)
    project = api.load_project(ws)
    check_upgrade_packages(project, ws, upgrade_packages)
    if check:
        stale = api.check_lock(project, ws)
        if as_json:
            c.emit_json({"lock": str(ws.lock_path), "stale": stale})
        if stale:
            raise LockError(
                f"{ws.lock_path} is out of date for: {', '.join(stale)}",
                hint="run `layerforge lock` and commit layerforge.lock",
            )
        if not as_json:
            click.echo(f"{ws.lock_path.name} is up to date")
        return
    options = api.ResolveOptions(
        upgrade=upgrade, upgrade_packages=upgrade_packages, upgrade_os=upgrade_os
    )
    result = api.lock_project(project, ws, options, c.reporter(as_json))
    if as_json:
        c.emit_json(_lock_json(result.lock, ws.lock_path, result.changed))
        return
    _print_lock(c.console(), result.lock, project)
    rt.print_runtime(c.console(), api.runtime_summaries(project, result.lock))
    verb = "wrote" if result.changed else "unchanged:"
    click.echo(f"{verb} {ws.lock_path}")


def check_upgrade_packages(project: Any, ws: Any, names: tuple[str, ...]) -> None:
    """Every -P NAME is locked already, or asked for by some node of the manifest."""
    if not names:
        return
    import re  # noqa: PLC0415

    from packaging.utils import canonicalize_name  # noqa: PLC0415

    from layerforge import api  # noqa: PLC0415
    from layerforge.errors import UsageError  # noqa: PLC0415

    lock = api.read_optional_lock(ws)
    known = {n for node in project.nodes.values() for n in node.requirements.names()}
    known |= {p.name for node in (lock.nodes.values() if lock else ()) for p in node.packages}
    for raw in names:
        match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", raw.strip())
        name = canonicalize_name(match.group(0)) if match else raw
        if name not in known:
            raise UsageError(
                f"--upgrade-package: no locked distribution named {raw!r}"
                f"{api.did_you_mean(name, sorted(known))}",
                hint="name a distribution in layerforge.lock or in a node's requirements",
            )


# -- rendering ----------------------------------------------------------------------------------


def _lock_json(lock: Any, path: Path, changed: bool) -> dict[str, Any]:
    return {
        "lock": str(path),
        "changed": changed,
        "nodes": {
            name: {
                "packages": [
                    {"name": p.name, "version": p.version, "size": p.size} for p in node.packages
                ],
                "source": node.source.to_json() if node.source is not None else {},
                "runtime": {g.name: [p.pin for p in g.packages] for g in node.runtime},
                **_os_json(node.source),
            }
            for name, node in lock.nodes.items()
        },
    }


def _os_json(pin: Any) -> dict[str, Any]:
    """The locked Debian packages of a debootstrap root (only when there are some)."""
    if pin is None or not pin.os:
        return {}
    return {"os": [{"name": r.name, "version": r.version, "arch": r.arch} for r in pin.os]}


def _print_lock(console: Any, lock: Any, project: Any) -> None:
    from rich.table import Table  # noqa: PLC0415

    table = Table(title="layerforge.lock", title_justify="left")
    for col in ("node", "own packages", "wheel bytes", "largest"):
        table.add_column(col)
    for name in project.nodes:
        node = lock.nodes[name]
        largest = sorted(node.packages, key=lambda p: -p.size)[:3]
        table.add_row(
            name,
            str(len(node.packages)),
            format_size(sum(p.size for p in node.packages)),
            ", ".join(f"{p.name} {p.version}" for p in largest),
        )
    console.print(table)
    for name in project.nodes:
        pin = lock.nodes[name].source
        if pin is not None and pin.os:
            dates = "; ".join(f"{a.suite} of {a.date}" for a in pin.archives)
            console.print(f"{name}: {len(pin.os)} Debian packages locked ({dates})")
