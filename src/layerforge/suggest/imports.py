"""Which distributions a service uses: the absolute imports of its source (``ast``), mapped to
distributions through the top-level names in their ``RECORD``s (read from the built layers:
more reliable than ``top_level.txt``, which modern wheels often lack), plus the executable of
its command (a console script) and a ``python -m X`` module, closed over ``Requires-Dist``
(without extras).

Dynamic imports (plugins, ``importlib``) are invisible, so "unused" is an upper bound, and a
candidate that drops a base's distributions from a service is only made when no service
below it is seen to use them."""

from __future__ import annotations

import csv
import io
import posixpath
import sys
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from layerforge.audit.imports import imported_names
from layerforge.errors import StoreError
from layerforge.oci.compress import open_layer


@dataclass(frozen=True)
class DistInfo:
    name: str  # canonical
    version: str
    top_level: frozenset[str]
    scripts: frozenset[str]
    requires: tuple[str, ...]  # canonical names, extras left out


def _dist_of(path: str) -> tuple[str, str] | None:
    parent = posixpath.basename(posixpath.dirname(path))
    if not parent.endswith(".dist-info"):
        return None
    name, _, version = parent[: -len(".dist-info")].partition("-")
    return str(canonicalize_name(name)), version


def _record(text: str) -> tuple[set[str], set[str]]:
    tops: set[str] = set()
    scripts: set[str] = set()
    for row in csv.reader(io.StringIO(text)):
        if not row:
            continue
        path = row[0]
        if path.startswith("../../../bin/"):
            scripts.add(posixpath.basename(path))
            continue
        first = path.split("/", 1)[0]
        if (
            path.startswith("..")
            or first.endswith((".dist-info", ".data"))
            or first
            in (
                "__pycache__",
                "",
            )
        ):
            continue
        if "/" not in path:
            if not first.endswith(".py") and ".cpython-" not in first and not first.endswith(".so"):
                continue
            first = first.split(".", 1)[0]
        tops.add(first)
    return tops, scripts


def _requires(text: str) -> tuple[str, ...]:
    out: list[str] = []
    for line in HeaderParser().parsestr(text).get_all("Requires-Dist") or []:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if req.marker is not None and "extra" in str(req.marker):
            continue
        out.append(str(canonicalize_name(req.name)))
    return tuple(out)


def read_dists(path: Path, digest: str) -> list[DistInfo]:
    """The distributions installed by one layer blob, from their RECORD and METADATA."""
    records: dict[tuple[str, str], tuple[set[str], set[str]]] = {}
    requires: dict[tuple[str, str], tuple[str, ...]] = {}
    try:
        with open_layer(path) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                name = posixpath.normpath(member.name.lstrip("/"))
                dist = _dist_of(name)
                base = posixpath.basename(name)
                if dist is None or base not in ("RECORD", "METADATA") or not member.isfile():
                    continue
                handle = tar.extractfile(member)
                if handle is None:
                    continue
                text = handle.read().decode("utf-8", "replace")
                if base == "RECORD":
                    records[dist] = _record(text)
                else:
                    requires[dist] = _requires(text)
    except (OSError, tarfile.TarError, EOFError) as exc:
        raise StoreError(f"layer {digest} cannot be read as a tar: {exc}") from exc
    return [
        DistInfo(n, v, frozenset(tops), frozenset(scripts), requires.get((n, v), ()))
        for (n, v), (tops, scripts) in records.items()
    ]


def source_imports(source: Path) -> set[str]:
    """The absolute import roots of every ``.py`` file under ``source``, less the standard
    library and the source's own top-level packages and modules."""
    found = imported_names(source)  # the audit's scan: one reader of import statements
    own = {p.name.removesuffix(".py") for p in source.iterdir()} if source.is_dir() else set()
    return found - own - set(sys.stdlib_module_names)


def command_roots(argv: Iterable[str]) -> tuple[set[str], set[str]]:
    """(import roots, executables) a command runs: ``python -m X`` gives X, anything else
    its first word."""
    words = list(argv)
    if not words:
        return set(), set()
    if "-m" in words[:-1] and posixpath.basename(words[0]).startswith("python"):
        return {words[words.index("-m") + 1].split(".", 1)[0]}, set()
    return set(), {posixpath.basename(words[0])}


def closure(imports: set[str], executables: set[str], dists: dict[str, DistInfo]) -> set[str]:
    """The distributions a service uses: those providing its imports or its command, and
    everything they require."""
    todo = [d.name for d in dists.values() if d.top_level & imports or d.scripts & executables]
    used: set[str] = set()
    while todo:
        name = todo.pop()
        if name in used or name not in dists:
            continue
        used.add(name)
        todo.extend(dists[name].requires)
    return used
