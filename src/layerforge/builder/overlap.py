"""Paths that several distributions install: one deterministic winner.

CUDA wheels all ship ``nvidia/__init__.py``; two tools may ship a ``bin/`` script of the same
name; ``nvidia-cutlass-dsl-libs-cu13`` overwrites files of ``-libs-base``. Where the RECORDs
agree on the bytes, nothing is to decide (the layer writer keeps one entry per path). Where
they differ, the file a single venv ends up with depends on which distribution was installed
last, and uv installs in parallel: its winner is a race, so the image digest would be too.

So the winner is defined here: the later install in dependency order (a distribution after
everything it requires, among those installed together; ties and cycles broken by canonical
name), which is the order uv's own proposal for sequential installs uses. After uv has
installed a stage, :func:`settle` checks each contested path's bytes against the winner's
RECORD hash and, where the race went the other way, installs the winner alone into a side
prefix and copies its file over (unlinking first: staged files are hardlinks into uv's
cache). Every layer written from the stage (own and shared) then holds the winner's bytes.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import heapq
import io
import os
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Callable, Sequence
from email.parser import HeaderParser
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name as canonical

from layerforge.lock.lockfile import Package

Installer = Callable[[Sequence[Package], Path], None]

# Markers are evaluated for the image (CPython on linux x86_64); the Python version is the
# target's. An extra-only requirement counts: if its target was installed, it was wanted.
_TARGET = {
    "os_name": "posix",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "platform_python_implementation": "CPython",
    "implementation_name": "cpython",
}


def _metadata(dist_info: Path) -> tuple[str, list[str]]:
    """(canonical name, Requires-Dist lines) of an installed distribution."""
    text = (dist_info / "METADATA").read_text(encoding="utf-8", errors="replace")
    headers = HeaderParser().parsestr(text, headersonly=True)
    name = headers.get("Name") or dist_info.name.removesuffix(".dist-info").partition("-")[0]
    return canonical(name), headers.get_all("Requires-Dist") or []


def _applies(req: Requirement, python: str) -> bool:
    if req.marker is None or "extra" in str(req.marker):
        return True
    env = {**_TARGET, "python_version": python, "python_full_version": f"{python}.0"}
    env |= {"platform_release": "", "platform_version": "", "extra": ""}
    return req.marker.evaluate(env)


def _requires(dist_info: Path, python: str) -> tuple[str, set[str]]:
    """(canonical name, canonical names it requires on the target) of a distribution."""
    name, lines = _metadata(dist_info)
    deps: set[str] = set()
    for line in lines:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if _applies(req, python):
            deps.add(canonical(req.name))
    return name, deps


def install_order(site: Path, python: str) -> list[str]:
    """Canonical names of the distributions installed in ``site``, each after those it
    requires (among them), ties and cycles broken by name."""
    found = dict(
        _requires(d, python) for d in sorted(site.glob("*.dist-info")) if (d / "METADATA").is_file()
    )
    waiting = {name: {d for d in deps if d in found and d != name} for name, deps in found.items()}
    order: list[str] = []
    ready = sorted(name for name, deps in waiting.items() if not deps)
    heapq.heapify(ready)
    while waiting:
        # a cycle leaves nothing ready: release the smallest name on one
        name = heapq.heappop(ready) if ready else min(n for n in waiting if _on_cycle(n, waiting))
        del waiting[name]
        order.append(name)
        for other, deps in waiting.items():
            if name in deps:
                deps.discard(name)
                if not deps:
                    heapq.heappush(ready, other)
    return order


def _on_cycle(start: str, waiting: dict[str, set[str]]) -> bool:
    """Whether ``start`` can reach itself through the requirements still waiting."""
    seen: set[str] = set()
    todo = list(waiting[start])
    while todo:
        name = todo.pop()
        if name == start:
            return True
        if name not in seen:
            seen.add(name)
            todo.extend(waiting.get(name, ()))
    return False


def contested(site: Path) -> dict[Path, dict[str, str]]:
    """Absolute path -> {canonical name: RECORD hash} for every path two or more installed
    distributions list (RECORD itself excluded)."""
    holders: dict[Path, dict[str, str]] = defaultdict(dict)
    for record in sorted(site.glob("*.dist-info/RECORD")):
        name, _ = _metadata(record.parent)
        for row in csv.reader(io.StringIO(record.read_text(encoding="utf-8"))):
            if not row or row[0].endswith(".dist-info/RECORD"):
                continue
            path = Path(os.path.normpath(site / row[0]))
            holders[path][name] = row[1] if len(row) > 1 else ""
    return {path: found for path, found in holders.items() if len(found) > 1}


def _record_hash(path: Path) -> str:
    digest = hashlib.sha256(path.read_bytes()).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def settle(stage: Path, python: str, packages: Sequence[Package], install: Installer) -> list[str]:
    """Give every path that installed distributions disagree on the winner's bytes;
    returns ``"path <- name"`` for each file replaced (the race went the other way)."""
    site = stage / "lib" / f"python{python}" / "site-packages"
    disputed = {
        path: found
        for path, found in contested(site).items()
        if "" in found.values() or len(set(found.values())) > 1
    }
    if not disputed:
        return []
    rank = {name: i for i, name in enumerate(install_order(site, python))}
    by_name: dict[str, Package] = {canonical(p.name): p for p in packages}
    todo: dict[str, list[Path]] = defaultdict(list)
    for path, found in sorted(disputed.items()):
        winner = max(found, key=lambda name: (rank.get(name, -1), name))
        if found[winner] and path.is_file() and _record_hash(path) == found[winner]:
            continue
        if winner in by_name:
            todo[winner].append(path)
    fixed: list[str] = []
    for winner, paths in sorted(todo.items()):
        side = Path(tempfile.mkdtemp(prefix=f"side-{winner}-", dir=stage.parent))
        try:
            install([by_name[winner]], side)
            for path in paths:
                source = side / path.relative_to(stage)
                path.unlink(missing_ok=True)
                shutil.copy2(source, path)
                fixed.append(f"{path.relative_to(stage).as_posix()} <- {winner}")
        finally:
            shutil.rmtree(side, ignore_errors=True)
    return fixed
