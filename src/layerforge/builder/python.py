"""Python dependency layers: locked wheels installed with uv into a staging prefix, then
split by distribution into layers under ``/opt/venv``.

uv installs for the *target* Python and platform (``--python-version``, ``--python-platform``,
``--no-deps``, ``--require-hashes``). Each distribution's files are known from its RECORD;
a distribution larger than the threshold gets a layer of its own (so every image holding
that version shares the layer by digest), the rest share one layer. Entry-point scripts
carry the host interpreter in their shebang: they are rewritten to ``/opt/venv/bin/python``
and their RECORD lines updated. Files no RECORD lists (uv's ``.lock``) never reach a layer.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from layerforge import proc
from layerforge.builder.sdist import BuiltWheel
from layerforge.errors import BuildError
from layerforge.lock.lockfile import Package
from layerforge.lock.uv import install_argv
from layerforge.manifest import Project
from layerforge.oci.tarball import Entry

VENV = "opt/venv"
SHEBANG = b"#!/opt/venv/bin/python"
# uv writes, into the dist-info of a wheel installed from a local file (find_links), the
# time it cached it: listed in RECORD, different on every machine and every cold build.
UV_ONLY = frozenset({"uv_cache.json"})
AUTH_HINT = " and its credentials (UV_INDEX_<NAME>_USERNAME/_PASSWORD or netrc)"


@dataclass(frozen=True)
class DistFiles:
    name: str
    version: str
    entries: tuple[Entry, ...]
    installed_size: int


@dataclass(frozen=True)
class LayerGroup:
    """Distributions that share one layer, and their files."""

    label: str  # e.g. "torch 2.13.0" or "12 packages"
    dists: tuple[DistFiles, ...]

    @property
    def entries(self) -> list[Entry]:
        """One entry per path: distributions that install the same path (the nvidia
        wheels' namespace ``__init__.py``) all point at the one staged file, which
        :func:`layerforge.builder.overlap.settle` gave the winner's bytes."""
        seen: dict[str, Entry] = {}
        for d in self.dists:
            for e in d.entries:
                seen.setdefault(e.path, e)
        return list(seen.values())

    @property
    def size(self) -> int:
        return sum(d.installed_size for d in self.dists)


def venv_entries(python_executable: str, version: str) -> list[Entry]:
    """The skeleton of /opt/venv, pointing at the image's own interpreter."""
    cfg = (
        f"home = {PurePosixPath(python_executable).parent}\n"
        "include-system-site-packages = false\n"
        f"version = {version}\n"
        f"executable = {python_executable}\n"
    ).encode()
    return [
        Entry(f"{VENV}/pyvenv.cfg", "file", 0o644, len(cfg), data=cfg),
        Entry(f"{VENV}/bin", "dir", 0o755),
        Entry(f"{VENV}/bin/python", "symlink", 0o777, linkname=python_executable),
        Entry(f"{VENV}/bin/python3", "symlink", 0o777, linkname="python"),
        Entry(f"{VENV}/bin/python{version}", "symlink", 0o777, linkname="python"),
        Entry(f"{VENV}/lib/python{version}/site-packages", "dir", 0o755),
        Entry(f"{VENV}/lib64", "symlink", 0o777, linkname="lib"),
    ]


def install(
    project: Project,
    packages: Sequence[Package],
    stage: Path,
    platform: str | None = None,
    built: Mapping[str, BuiltWheel] | None = None,
) -> None:
    """Install exactly the locked wheels (hash-checked, no dependencies) into ``stage``, for
    ``platform`` (the one they were locked for; None: the project's default): one uv run per
    locked index (see :func:`by_index`), so a pin comes from its own index. A locked sdist
    is installed from the wheel ``built`` from it (by its own hash)."""
    for index, group in by_index(packages).items():
        _install_group(project, group, stage, index, platform, built or {})


def by_index(packages: Sequence[Package]) -> dict[str | None, list[Package]]:
    """Packages by the named index they were pinned to (None: the project's indexes first)."""
    out: dict[str | None, list[Package]] = {}
    for pkg in sorted(packages, key=lambda p: (p.index is not None, p.index or "", p.name)):
        out.setdefault(pkg.index, []).append(pkg)
    return out


def _install_group(
    project: Project,
    packages: Sequence[Package],
    stage: Path,
    index: str | None,
    platform: str | None,
    built: Mapping[str, BuiltWheel],
) -> None:
    lines = [
        f"{p.pin} --hash=sha256:{built[p.name].sha256 if p.name in built else p.sha256}"
        for p in sorted(packages)
    ]
    reqs = stage.parent / f"{stage.name}.requirements.txt"
    reqs.write_text("\n".join(lines) + "\n")
    argv = install_argv(project, stage, reqs, index, platform)
    for name in sorted({p.name for p in packages} & set(built)):
        argv += ["--find-links", str(built[name].path.parent)]
    result = proc.run(argv, check=False)
    reqs.unlink(missing_ok=True)
    if result.returncode != 0:
        where = "the locked wheels" if index is None else f"the wheels locked from index {index!r}"
        raise BuildError(
            f"uv could not install {where}:\n{proc.tail(result.stderr)}",
            hint="check network access to the package index"
            + (AUTH_HINT if project.indexes else "")
            + ", or run `layerforge lock` again",
        )


def _record_hash(data: bytes) -> str:
    raw = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + raw.decode()


def _read_record(path: Path) -> list[list[str]]:
    return [row for row in csv.reader(io.StringIO(path.read_text())) if row]


def _write_record(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerows(rows)
    return out.getvalue().encode()


def collect(stage: Path, python: str) -> list[DistFiles]:
    """Files of each installed distribution, as layer entries under /opt/venv."""
    stage = stage.resolve()  # once: RECORD paths are then resolved lexically (a wheel
    site = stage / "lib" / f"python{python}" / "site-packages"  # holds no symlinks)
    dists: list[DistFiles] = []
    for record in sorted(site.glob("*.dist-info/RECORD")):
        dists.append(_dist_files(stage, site, record, python))
    return dists


def _dist_files(stage: Path, site: Path, record: Path, python: str) -> DistFiles:
    name, _, version = record.parent.name.removesuffix(".dist-info").partition("-")
    rows = _read_record(record)
    listed = {row[0] for row in rows}
    entries: list[Entry] = []
    size = 0
    new_rows: list[list[str]] = []
    for row in rows:
        rel = row[0]
        path = Path(os.path.normpath(os.path.join(site, rel)))
        if path == record:
            new_rows.append(row)
            continue
        if path.parent == record.parent and path.name in UV_ONLY:
            continue  # the install's own bookkeeping: a timestamp, not the distribution's
        member = _member(stage, path, python)
        data = _fixed_script(path) if member.startswith(f"{VENV}/bin/") else None
        if data is not None:
            new_rows.append([rel, _record_hash(data), str(len(data))])
            entries.append(Entry(member, "file", 0o755, len(data), data=data))
            size += len(data)
            continue
        st = path.lstat()
        mode = 0o755 if st.st_mode & 0o111 else 0o644
        entries.append(Entry(member, "file", mode, st.st_size, source=path))
        size += st.st_size
        new_rows.append(row)
        pyc = _bytecode_of(site, rel, path, python, listed)
        if pyc is not None:  # compile_bytecode: compiled in the image, next to its source
            new_rows.append(pyc[0])
            entries.append(pyc[1])
            size += pyc[1].size
    record_bytes = _write_record(new_rows)
    entries.append(
        Entry(_member(stage, record, python), "file", 0o644, len(record_bytes), data=record_bytes)
    )
    return DistFiles(name, version, tuple(entries), size + len(record_bytes))


def _bytecode_of(
    site: Path, rel: str, path: Path, python: str, listed: set[str]
) -> tuple[list[str], Entry] | None:
    """The RECORD row and entry of ``rel``'s compiled bytecode, if it was compiled."""
    if not rel.endswith(".py") or rel.startswith(".."):
        return None
    pyc = path.parent / "__pycache__" / f"{path.stem}.cpython-{python.replace('.', '')}.pyc"
    pyc_rel = (
        f"{rel.rsplit('/', 1)[0]}/__pycache__/{pyc.name}"
        if "/" in rel
        else (f"__pycache__/{pyc.name}")
    )
    if pyc_rel in listed or not pyc.is_file():
        return None
    data = pyc.read_bytes()
    member = f"{VENV}/lib/python{python}/site-packages/{pyc_rel}"
    return [pyc_rel, _record_hash(data), str(len(data))], Entry(
        member, "file", 0o644, len(data), data=data
    )


def _member(stage: Path, path: Path, python: str) -> str:
    """``path``'s member name; ``stage`` and ``path`` are both real (symlink-free) paths."""
    try:
        rel = path.relative_to(stage)
    except ValueError:
        raise BuildError(f"a wheel installs outside the venv: {path}") from None
    del python
    return f"{VENV}/{rel.as_posix()}"


def _fixed_script(path: Path) -> bytes | None:
    """Entry-point scripts with a host-python shebang, rewritten for the image."""
    with path.open("rb") as fh:
        head = fh.read(2)
        if head != b"#!":
            return None
        rest = fh.read()
    first, sep, body = (head + rest).partition(b"\n")
    if b"python" not in first:
        return None
    return SHEBANG + sep + body


def split(dists: Sequence[DistFiles], threshold: int) -> tuple[list[DistFiles], list[DistFiles]]:
    """(distributions that get a layer of their own, sorted by name; the rest, in order)."""
    big = sorted((d for d in dists if d.installed_size > threshold), key=lambda d: d.name)
    return big, [d for d in dists if d.installed_size <= threshold]


def rest_group(rest: Sequence[DistFiles]) -> LayerGroup | None:
    """The one layer the distributions below the threshold share (None if there are none)."""
    if not rest:
        return None
    label = f"{rest[0].name} {rest[0].version}" if len(rest) == 1 else f"{len(rest)} packages"
    return LayerGroup(label, tuple(rest))


def group(dists: list[DistFiles], threshold: int) -> list[LayerGroup]:
    """Large distributions alone (by name), then everything else in one group."""
    big, rest = split(dists, threshold)
    groups = [LayerGroup(f"{d.name} {d.version}", (d,)) for d in big]
    shared = rest_group(rest)
    return [*groups, shared] if shared is not None else groups


def venv_env(base: list[str]) -> list[tuple[str, str]]:
    path = dict(e.partition("=")[::2] for e in base).get("PATH", "/usr/local/bin:/usr/bin:/bin")
    parts = [p for p in path.split(":") if p and p != "/opt/venv/bin"]
    return [("PATH", ":".join(["/opt/venv/bin", *parts])), ("VIRTUAL_ENV", "/opt/venv")]
