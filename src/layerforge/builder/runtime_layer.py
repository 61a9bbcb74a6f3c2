"""The runtime layer of a node: its runtime groups' pins and the launcher, never the wheels.

For every runtime group in the node's own lock table (see :mod:`layerforge.lock.runtime`)::

    /opt/layerforge/runtime/GROUP.txt    name==version --hash=sha256:...  (pip -r format)
    /opt/layerforge/runtime/GROUP.json   file name, URL, sha256, size (and index) of each wheel,
                                         and what the group needs to run (``needs``, if declared)
    /opt/venv/lib/pythonX.Y/site-packages/layerforge_runtime/     the launcher (stdlib only)
                                                                  and cacert.pem (its last CA)
    /opt/venv/bin/layerforge-runtime                              its script

A child that re-locks an inherited group writes its own files over the parent's. The layer
is small (about 150 kB compressed with the launcher and its CA bundle, a few kB of pins
otherwise), built after the dependency layers: a runtime pin that moves changes this
layer (and the node's key) only, never a dependency layer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import resources
from typing import Any

from layerforge import runtime
from layerforge.lock.inputs import effective_lock
from layerforge.lock.lockfile import Lock, LockedGroup, LockedNode, Package
from layerforge.manifest import Node, Project
from layerforge.manifest.runtime import effective_groups
from layerforge.oci.tarball import Entry

PINS_DIR = "opt/layerforge/runtime"
SCRIPT = "opt/venv/bin/layerforge-runtime"
ENTRYPOINT = ("/opt/venv/bin/layerforge-runtime", "exec", "--")
MODULE = "layerforge_runtime"


def launcher_source() -> bytes:
    return resources.files("layerforge.runtime").joinpath("launcher.py").read_bytes()


def launcher_files() -> dict[str, bytes]:
    """The ``layerforge_runtime`` package as baked: file name -> bytes (stdlib only)."""
    support = runtime.support_files()
    main = f"import sys\n\nfrom {MODULE} import main\n\nsys.exit(main())\n".encode()
    return {
        "__init__.py": support["launcher.py"],
        "__main__.py": main,
        "wheel.py": support["wheel.py"],
        "cacert.pem": support["cacert.pem"],
    }


def pins_text(group: LockedGroup) -> str:
    lines = [
        f"# runtime group {group.name!r}: installed on first use, not baked",
        "# by `layerforge-runtime ensure " + group.name + "` "
        "(or pip install --require-hashes --no-deps -r this file)",
    ]
    lines += [f"{p.pin} --hash=sha256:{p.sha256}" for p in sorted(group.packages)]
    return "\n".join(lines) + "\n"


def wheels_doc(
    group: LockedGroup, needs: tuple[str, ...] = (), indexes: Mapping[str, str] | None = None
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "group": group.name,
        "wheels": [_wheel_doc(p) for p in sorted(group.packages)],
    }
    if needs:  # written only when declared: GROUP.json of other groups keeps its bytes
        doc["needs"] = list(needs)
    used = sorted({p.index for p in group.packages if p.index is not None})
    if used:  # name -> URL: the launcher sends an index's credentials to its host only
        doc["indexes"] = {name: (indexes or {}).get(name, "") for name in used}
    return doc


def _wheel_doc(p: Package) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": p.name,
        "version": p.version,
        "filename": p.filename,
        "url": p.url,
        "sha256": p.sha256,
        "size": p.size,
    }
    if p.index is not None:  # the launcher adds that index's credentials to the download
        doc["index"] = p.index
    return doc


def _file(path: str, data: bytes, mode: int = 0o644) -> Entry:
    return Entry(path, "file", mode, len(data), data=data)


def runtime_entries(
    locked: LockedNode,
    python: str,
    inherited: Mapping[str, LockedGroup] | None = None,
    needs: Mapping[str, tuple[str, ...]] | None = None,
    indexes: Mapping[str, str] | None = None,
) -> list[Entry]:
    """The files of the node's runtime layer; empty when it adds nothing.

    ``inherited``: the groups the parent image already carries (see
    :func:`layerforge.lock.inputs.effective_lock`). Their files are written again only when
    this node's resolution differs, and the launcher only by the first node in the chain.
    ``needs``: group -> what it needs to run (``gpu``), from the manifest.
    ``indexes``: the lock's named indexes (name -> URL), for wheels pinned to one.
    """
    inherited = inherited or {}
    changed = [g for g in locked.runtime if _differs(g, inherited.get(g.name))]
    if not changed:
        return []
    entries = [Entry(PINS_DIR, "dir", 0o755)]
    for group in changed:
        body = wheels_doc(group, (needs or {}).get(group.name, ()), indexes)
        doc = json.dumps(body, indent=1, sort_keys=True) + "\n"
        entries.append(_file(f"{PINS_DIR}/{group.name}.txt", pins_text(group).encode()))
        entries.append(_file(f"{PINS_DIR}/{group.name}.json", doc.encode()))
    if inherited:  # an ancestor's runtime layer holds the launcher already
        return entries
    package = f"opt/venv/lib/python{python}/site-packages/{MODULE}"
    entries += [_file(f"{package}/{name}", data) for name, data in launcher_files().items()]
    script = (
        f"#!/opt/venv/bin/python\nimport sys\nfrom {MODULE} import main\nsys.exit(main())\n"
    ).encode()
    entries.append(_file(SCRIPT, script, 0o755))
    return entries


def layer_for(lock: Lock, project: Project, name: str, python: str) -> tuple[list[Entry], str]:
    """The entries and history line of ``name``'s runtime layer (no entries: no layer)."""
    node = project.nodes[name]
    inherited = effective_lock(lock, project, node.parent) if node.parent else {}
    locked = lock.nodes[name]
    needs = {g: group.needs for g, (_owner, group) in effective_groups(project.nodes, name).items()}
    entries = runtime_entries(locked, python, inherited, needs, dict(lock.indexes))
    return entries, created_by(locked)


def _differs(group: LockedGroup, above: LockedGroup | None) -> bool:
    return above is None or sorted(above.packages) != sorted(group.packages)


def created_by(locked: LockedNode) -> str:
    names = ", ".join(g.name for g in locked.runtime)
    return f"layerforge: runtime groups ({names}): pins and launcher, not the wheels"


def entrypoint(node: Node) -> list[str] | None:
    """The image Entrypoint: the node's own, else the launcher where a group is declared.

    ``layerforge-runtime exec -- CMD`` installs ``$LAYERFORGE_RUNTIME_GROUPS`` (if set) and
    then execs CMD, so a worker opts in by its environment alone. Children inherit it.
    """
    if node.entrypoint is not None:
        return list(node.entrypoint)
    return list(ENTRYPOINT) if node.runtime else None
