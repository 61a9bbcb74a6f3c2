"""Why a node or runtime group cannot sit on its baked pins, in words a user can act on.

uv stops at the first conflict it proves and does not know which constraint is a pin baked in
a base. When a resolution fails, :func:`diagnose` resolves the same requirements again
*without* the baked constraints (preferring the baked versions, so only what must move
moves), in the requirements.txt format whose ``# via`` annotations say who pulled what in.
Every baked pin whose version differs in that free resolution is a :class:`Conflict`: the pin,
the node that bakes it, the requirement it blocks (read from the requiring wheel's METADATA:
the local file, or the index's PEP 658 ``.metadata``; else the version it wanted) and the chain
that pulled the requirer in. :func:`failure` words one failed entry (conflicts first, then
uv's whole stderr); :func:`combined` makes one error of every failure of a ``lock`` run.

Costs one extra uv compile (two when the requirement text is looked up) per failed node or
group, and only on failure.
"""

from __future__ import annotations

import tempfile
import tomllib
import urllib.request
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path
from urllib.parse import unquote, urlparse

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from layerforge import proc
from layerforge.errors import ResolveError
from layerforge.lock.lockfile import LockedNode, Package
from layerforge.lock.uv import ResolveOptions, compile_argv, write_inputs
from layerforge.manifest import Project

METADATA_LIMIT = 4 << 20  # a METADATA file is a few kB; never read a wheel by mistake
WAYS_OUT = (
    "a runtime install or a child never changes a baked pin: move the pin (change it in the "
    "node that bakes it, then `layerforge lock`), or host the group or node on a base that "
    "does not bake it"
)


@dataclass(frozen=True)
class Conflict:
    """A baked pin that blocks a requirement of the node or group being resolved."""

    pin: str  # "gamma==1.0"
    owner: str  # section of the node that bakes it: "bases.base"
    blocked: str  # "gamma>=2", or "gamma 2.0" when the requirement text is unknown
    by: str  # who requires it: a package ("alpha") or the entry itself ("services.api")
    via: tuple[str, ...]  # the packages that pulled ``by`` in, nearest first

    def line(self) -> str:
        via = f" (via {' <- '.join(self.via)})" if self.via else ""
        blocks = f"baked pin {self.pin} ({self.owner}) blocks {self.blocked}"
        return f"{blocks}, required by {self.by}{via}"


def diagnose(
    project: Project,
    where: str,
    lines: Sequence[str],
    baked: Mapping[str, tuple[Package, str]],
    options: ResolveOptions,
    platform: str | None = None,
) -> list[Conflict]:
    """The baked pins (name -> (package, owner section)) that block ``lines``, resolved for
    ``platform``; [] when the free resolution fails too (the conflict is then not with a
    baked pin)."""
    if not lines:
        return []
    with tempfile.TemporaryDirectory(prefix="layerforge-conflicts-") as tmp:
        work = Path(tmp)
        write_inputs(work, project, lines)
        (work / "constraints.txt").write_text("")
        prefs = "".join(p.pin + "\n" for p, _owner in baked.values())
        (work / "requirements.txt").write_text(prefs)  # uv prefers the output file's pins
        argv = _as_requirements_txt(compile_argv(project, work, options, platform))
        result = proc.run(argv, cwd=work, check=False)
        if result.returncode != 0:
            return []
        free, via = parse_annotated((work / "requirements.txt").read_text())
        moved = {n: v for n, v in free.items() if n in baked and baked[n][0].version != v}
        if not moved:
            return []
        (work / "pylock.toml").unlink(missing_ok=True)
        urls = _wheel_urls(project, work, options, platform)
    out: list[Conflict] = []
    for name, version in sorted(moved.items()):
        pkg, owner = baked[name]
        requirers = via.get(name, [])
        chosen: tuple[str, str] | None = None
        for requirer in requirers:
            own = requirer.startswith("-")
            spec = _own_line(lines, name) if own else _requirement_on(urls.get(requirer), name)
            if spec is not None and not Requirement(spec).specifier.contains(pkg.version, True):
                chosen = (where if own else requirer, spec)
                break
        if chosen is None:
            first = next((r for r in requirers if not r.startswith("-")), where)
            chosen = (first, f"{name} {version}")
        by, text = chosen
        out.append(Conflict(pkg.pin, owner, text, by, _chain(via, by)))
    return out


def baked_owners(
    project: Project, lock_nodes: Mapping[str, LockedNode], chain: Sequence[str]
) -> dict[str, tuple[Package, str]]:
    """name -> (baked package, section of the node that bakes it), for the nodes of ``chain``."""
    out: dict[str, tuple[Package, str]] = {}
    for name in chain:
        for pkg in lock_nodes[name].packages:
            out[pkg.name] = (pkg, project.nodes[name].section)
    return out


def failure(
    where: str, context: str, stderr: str, conflicts: Sequence[Conflict], hint: str
) -> ResolveError:
    """One failed entry: its conflicts with baked pins, then uv's whole stderr; the hint gives
    the two ways out of a baked pin, or ``hint`` when no baked pin is to blame."""
    body = [f"uv could not resolve {where} {context}:"]
    body += [f"  {c.line()}" for c in conflicts]
    body += ["  uv says:", *(f"    {line}" for line in stderr.rstrip().splitlines())]
    return ResolveError("\n".join(body), hint=WAYS_OUT if conflicts else hint)


def combined(errors: Sequence[ResolveError], skipped: Sequence[str]) -> ResolveError:
    """One error for a whole ``lock`` run: every failure, then the entries left unresolved."""
    if len(errors) == 1 and not skipped:
        return errors[0]
    parts = [f"{len(errors)} lock entries could not be resolved (nothing was written):"]
    parts += [e.message for e in errors]
    parts += [f"{s}: not resolved (its base failed)" for s in skipped]
    hints = [part for e in errors if e.hint for part in e.hint.split("; ")]
    return ResolveError("\n".join(parts), hint="; ".join(dict.fromkeys(hints)) or None)


def parse_annotated(text: str) -> tuple[dict[str, str], dict[str, list[str]]]:
    """(name -> version, name -> who required it) of uv's annotated requirements.txt."""
    versions: dict[str, str] = {}
    via: dict[str, list[str]] = {}
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if not line.startswith("#"):
            name, _, version = line.partition("==")
            current = canonicalize_name(name.strip())
            versions[current] = version.split(";")[0].split()[0] if version else ""
            via[current] = []
            continue
        item = line.lstrip("#").strip()
        if item.startswith("via"):
            item = item.removeprefix("via").strip()
        if item and current:
            via[current].append(item if item.startswith("-") else canonicalize_name(item))
    return versions, via


def _chain(via: Mapping[str, list[str]], start: str) -> tuple[str, ...]:
    """Who pulled ``start`` in, nearest first, up to a requirement line of the entry."""
    out: list[str] = []
    current = start
    while True:
        parents = [p for p in via.get(current, []) if not p.startswith("-")]
        if not parents or any(p.startswith("-") for p in via.get(current, [])):
            return tuple(out)
        current = parents[0]
        if current in out or current == start:
            return tuple(out)
        out.append(current)


def _own_line(lines: Sequence[str], name: str) -> str | None:
    for line in lines:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if canonicalize_name(req.name) == name and req.specifier:
            return f"{req.name}{req.specifier}"
    return None


def _as_requirements_txt(argv: list[str]) -> list[str]:
    """The same compile, writing an annotated requirements.txt instead of pylock.toml."""
    out = list(argv)
    for flag, value in (("--format", "requirements.txt"), ("--output-file", "requirements.txt")):
        if flag in out:
            out[out.index(flag) + 1] = value
    return [*out, "--annotation-style", "split", "--no-strip-markers"]


def _wheel_urls(
    project: Project, work: Path, options: ResolveOptions, platform: str | None
) -> dict[str, str]:
    """name -> wheel URL of the free resolution (pylock.toml has them, requirements.txt not)."""
    result = proc.run(compile_argv(project, work, options, platform), cwd=work, check=False)
    if result.returncode != 0 or not (work / "pylock.toml").is_file():
        return {}
    out: dict[str, str] = {}
    for raw in tomllib.loads((work / "pylock.toml").read_text()).get("packages", []):
        wheels = raw.get("wheels") or [{}]
        url = str(wheels[0].get("url") or wheels[0].get("path") or "")
        if url:
            out[canonicalize_name(str(raw["name"]))] = url
    return out


def _wheel_metadata(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as zf:
            meta = next(m for m in zf.namelist() if m.endswith(".dist-info/METADATA"))
            return zf.read(meta).decode("utf-8", "replace")
    except (OSError, StopIteration, zipfile.BadZipFile):
        return None


def _remote_metadata(url: str) -> str | None:
    """The wheel's METADATA as the index serves it beside the wheel (PEP 658/714); None when
    it does not (or needs credentials): the conflict then names the version instead."""
    try:
        with urllib.request.urlopen(url + ".metadata", timeout=15) as resp:  # noqa: S310
            return bytes(resp.read(METADATA_LIMIT)).decode("utf-8", "replace")
    except (OSError, ValueError):  # URLError, HTTPError, timeouts are OSErrors
        return None


def _requirement_on(url: str | None, name: str) -> str | None:
    """``name``'s specifier in the Requires-Dist of the wheel at ``url``: read from the file
    for a local wheel, else from the index's ``URL.metadata`` (PEP 658), else unknown."""
    if not url:
        return None
    parsed = urlparse(url)
    if parsed.scheme in ("http", "https"):
        text = _remote_metadata(url)
    elif parsed.scheme in ("", "file"):
        text = _wheel_metadata(Path(unquote(parsed.path)))
    else:
        return None
    if text is None:
        return None
    headers = HeaderParser().parsestr(text)
    for value in headers.get_all("Requires-Dist") or []:
        try:
            req = Requirement(value)
        except InvalidRequirement:
            continue
        if canonicalize_name(req.name) == name and req.specifier:
            return f"{req.name}{req.specifier}"
    return None
