"""The Debian archive, read the way apt reads it, for locked debootstrap roots.

- :func:`fetch_release`: a suite's signed ``InRelease`` (checked with ``gpgv`` and the Debian
  archive keyring), its ``Date`` and the sha256 of every index it names; the evidence the lock
  records (:class:`~layerforge.lock.lockfile.ArchiveState`).
- :func:`fetch_packages`: the ``Packages`` index that InRelease names, fetched **by hash**
  (no race with a mirror update) and checked against it.
- :func:`rows_for`: the lock rows of installed packages, looked up in that index.
- :func:`fetch_debs`: the locked ``.deb`` files into the cache area ``debs/<sha256>.deb``
  (checked by sha256 and size); every package the archive no longer serves is named in one
  error, before anything runs.
- :func:`flat_mirror`: a local mirror of exactly the locked ``.deb`` files, whose ``Packages``
  stanzas come from each .deb's control file plus the locked ``Filename``, ``Size``,
  ``SHA256`` and the archive's ``Priority`` (a control file may disagree with the archive, and
  dpkg's status records the stanza's).

The mirror is the one debootstrap uses by default (its ``DEF_MIRROR``): no host name is
spelled here, and none is written in a lock.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from layerforge import cachedir, proc
from layerforge.errors import ArchiveError, SourceError
from layerforge.lock.lockfile import ArchiveState, DebPackage

DEBOOTSTRAP_SCRIPT = Path("/usr/sbin/debootstrap")
ARCHIVE_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
_SIGNED = "-----BEGIN PGP SIGNED MESSAGE-----"
_SIGNATURE = "-----BEGIN PGP SIGNATURE-----"


class NotFound(Exception):
    """The archive answered 404 (or the file does not exist, for a ``file:`` mirror)."""


Fetch = Callable[[str], bytes]


def http_get(url: str, timeout: float = 120.0) -> bytes:
    """GET ``url``: its bytes; :class:`NotFound` on 404; a :class:`SourceError` otherwise."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
            data: bytes = response.read()
            return data
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code in (404, 410):
            raise NotFound(url) from None
        raise SourceError(f"{url}: HTTP {exc.code}", hint="try again later") from None
    except FileNotFoundError:
        raise NotFound(url) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SourceError(
            f"cannot reach the Debian archive: {url}: {reason}",
            hint="check the network (the archive debootstrap uses), then try again",
        ) from None


def default_mirror(script: Path = DEBOOTSTRAP_SCRIPT) -> str:
    """The mirror debootstrap uses when none is given (``DEF_MIRROR`` in its script)."""
    try:
        text = script.read_text(errors="replace")
    except OSError:
        text = ""
    found = re.search(r'^DEF_MIRROR="([^"]+)"', text, re.MULTILINE)
    if found is None:
        raise SourceError(
            f"cannot find debootstrap's default mirror in {script}",
            hint="install debootstrap (apt-get install debootstrap)",
        )
    return found.group(1).rstrip("/")


def host_arch() -> str:
    """The Debian architecture debootstrap installs for on this machine."""
    return proc.run(["dpkg", "--print-architecture"]).stdout.strip()


# -- control files and indexes ------------------------------------------------------------------


def parse_stanzas(text: str) -> list[dict[str, str]]:
    """deb822 paragraphs: fields in their order, continuation lines kept in the value."""
    out: list[dict[str, str]] = []
    current: dict[str, str] = {}
    last = ""
    for line in text.splitlines():
        if not line.strip():
            if current:
                out.append(current)
            current, last = {}, ""
        elif line[0] in " \t" and last:
            current[last] += "\n" + line
        elif ":" in line:
            key, _, value = line.partition(":")
            last = key
            current[key] = value.strip()
    if current:
        out.append(current)
    return out


def write_stanzas(stanzas: Iterable[dict[str, str]]) -> str:
    """deb822 text; every stanza ends in a blank line (debootstrap's parser drops a last stanza
    without one)."""
    parts = []
    for stanza in stanzas:
        lines = [
            f"{k}: {v}" if v and not v.startswith("\n") else f"{k}:{v}" for k, v in stanza.items()
        ]
        parts.append("\n".join(lines) + "\n\n")
    return "".join(parts)


@dataclass(frozen=True)
class Release:
    suite: str
    date: str
    by_hash: bool
    files: dict[str, tuple[str, int]]  # path under dists/SUITE -> (sha256, size)
    state: ArchiveState


def parse_release(text: str, suite: str, digest: str) -> Release:
    """A (verified, clear) Release text: its Date and the SHA256 list of its indexes."""
    stanza = parse_stanzas(text)[0] if text.strip() else {}
    files: dict[str, tuple[str, int]] = {}
    for line in stanza.get("SHA256", "").splitlines():
        parts = line.split()
        if len(parts) == 3:
            files[parts[2]] = (parts[0], int(parts[1]))
    date = stanza.get("Date", "")
    by_hash = stanza.get("Acquire-By-Hash", "no").lower() == "yes"
    return Release(suite, date, by_hash, files, ArchiveState(suite, digest, date))


def clear_text(signed: str) -> str:
    """The signed text of a clearsigned message (dash-escaping undone)."""
    if not signed.startswith(_SIGNED):
        return signed
    body = signed.split("\n\n", 1)[1] if "\n\n" in signed else ""
    body = body.split(_SIGNATURE, 1)[0]
    return "\n".join(line[2:] if line.startswith("- ") else line for line in body.splitlines())


def verify_inrelease(data: bytes, keyring: Path, where: str) -> None:
    """Refuse an InRelease that the Debian archive keyring did not sign (gpgv, as apt)."""
    with tempfile.NamedTemporaryFile(suffix=".InRelease") as tmp:
        tmp.write(data)
        tmp.flush()
        result = proc.run(["gpgv", "--keyring", str(keyring), tmp.name], check=False)
    if result.returncode != 0:
        raise SourceError(
            f"{where}: the archive's InRelease is not signed by a key of {keyring}:\n"
            + proc.tail(result.stderr, 5),
            hint="check the mirror (a proxy that rewrites files?), then try again",
        )


def fetch_release(
    mirror: str,
    suite: str,
    where: str,
    fetch: Fetch = http_get,
    keyring: Path | None = ARCHIVE_KEYRING,
) -> Release:
    """The suite's InRelease, verified with ``keyring`` (None: not verified, for tests)."""
    url = f"{mirror}/dists/{suite}/InRelease"
    try:
        data = fetch(url)
    except NotFound:
        raise SourceError(
            f"{where}: the archive has no suite {suite!r} ({url}: 404)",
            hint="use a suite the archive serves, such as 'bookworm' or 'trixie'",
        ) from None
    if keyring is not None:
        verify_inrelease(data, keyring, where)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    return parse_release(clear_text(data.decode(errors="replace")), suite, digest)


def fetch_packages(
    mirror: str,
    release: Release,
    arch: str,
    where: str,
    fetch: Fetch = http_get,
    component: str = "main",
) -> list[dict[str, str]]:
    """The ``Packages`` index the InRelease names (by hash when the archive offers it),
    checked against the sha256 the InRelease gives."""
    base = f"{component}/binary-{arch}"
    for name, unpack in (("Packages.xz", lzma.decompress), ("Packages", lambda b: b)):
        entry = release.files.get(f"{base}/{name}")
        if entry is None:
            continue
        sha, _size = entry
        where_in = f"by-hash/SHA256/{sha}" if release.by_hash else name
        data = fetch(f"{mirror}/dists/{release.suite}/{base}/{where_in}")
        if hashlib.sha256(data).hexdigest() != sha:
            raise SourceError(
                f"{where}: {release.suite}/{base}/{name} does not match its InRelease",
                hint="the mirror is being updated: try again in a few minutes",
            )
        return parse_stanzas(unpack(data).decode(errors="replace"))
    raise SourceError(
        f"{where}: {release.suite}'s InRelease names no {base}/Packages index",
        hint=f"is {arch!r} an architecture of {release.suite}?",
    )


def installed(status_text: str) -> list[tuple[str, str, str]]:
    """(name, version, arch) of each package a dpkg status file lists as installed."""
    out = []
    for stanza in parse_stanzas(status_text):
        if stanza.get("Status", "").endswith(" installed"):
            out.append((stanza["Package"], stanza["Version"], stanza["Architecture"]))
    return out


def rows_for(
    wanted: Iterable[tuple[str, str, str]], index: list[dict[str, str]], suite: str
) -> tuple[tuple[DebPackage, ...], list[str]]:
    """The lock rows of ``wanted`` (name, version, arch) from ``index``, and the
    ``name version`` of those it does not hold."""
    by_key = {(s.get("Package"), s.get("Version"), s.get("Architecture")): s for s in index}
    rows: list[DebPackage] = []
    missing: list[str] = []
    for name, version, arch in wanted:
        stanza = by_key.get((name, version, arch))
        if stanza is None:
            missing.append(f"{name} {version}")
            continue
        rows.append(
            DebPackage(
                name,
                version,
                arch,
                suite,
                stanza["Filename"],
                stanza["SHA256"],
                int(stanza["Size"]),
                stanza.get("Priority", "optional"),
            )
        )
    return tuple(sorted(rows)), missing


def newest(
    index: list[dict[str, str]], names: Iterable[str], arch: str
) -> list[tuple[str, str, str]]:
    """(name, version, arch) of ``names`` as ``index`` serves them (one version per package
    in a Debian suite; the host architecture before ``all``)."""
    by_name: dict[str, dict[str, str]] = {}
    for stanza in index:
        name = stanza.get("Package", "")
        if stanza.get("Architecture") in (arch, "all") and (
            name not in by_name or stanza.get("Architecture") == arch
        ):
            by_name[name] = stanza
    return [
        (n, by_name[n]["Version"], by_name[n]["Architecture"]) if n in by_name else (n, "", arch)
        for n in names
    ]


_INST = re.compile(r"^Inst (\S+) (?:\[[^\]]*\] )?\((\S+) [^\[]*\[([^\]]+)\]\)")


def parse_inst(output: str) -> list[tuple[str, str, str]]:
    """(name, version, arch) of each ``Inst`` line of ``apt-get install -s`` (an upgrade's
    ``[old version]`` skipped): what apt would install, in its order."""
    out = []
    for line in output.splitlines():
        found = _INST.match(line.strip())
        if found:
            out.append((found.group(1), found.group(2), found.group(3)))
    return out


def identity_of(rows: Iterable[DebPackage]) -> str:
    """The OS source identity of a root installed from ``rows``: the same bytes as
    ``debootstrap.dpkg_identity`` of that root (which it is checked against)."""
    raw = json.dumps(sorted(f"{r.name}={r.version}" for r in rows)).encode()
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def rows_key(rows: Iterable[DebPackage]) -> str:
    """The sha256 of what decides a locked root's bytes (names a cache entry and a record)."""
    doc = [[r.name, r.version, r.arch, r.sha256, r.priority] for r in sorted(rows)]
    return hashlib.sha256(json.dumps(doc).encode()).hexdigest()


# -- the .deb files: cache area, fetch, local mirror -------------------------------------------


def deb_path(cache_dir: Path, sha256: str) -> Path:
    return cachedir.DEBS.path(cache_dir, f"{sha256}.deb")


def fetch_debs(
    rows: Iterable[DebPackage],
    mirror: str,
    cache_dir: Path,
    where: str,
    fetch: Fetch = http_get,
) -> dict[str, Path]:
    """sha256 -> the cached .deb of every row, fetched first where missing. All of them are
    tried before one error names every package the archive no longer serves."""
    rows = list(rows)
    area = cachedir.DEBS.path(cache_dir)
    out: dict[str, Path] = {}
    gone: list[DebPackage] = []
    wrong: list[str] = []
    for row in rows:
        path = deb_path(cache_dir, row.sha256)
        if path.is_file():
            out[row.sha256] = path
            continue
        try:
            data = fetch(f"{mirror}/{row.path}")
        except NotFound:
            gone.append(row)
            continue
        if hashlib.sha256(data).hexdigest() != row.sha256 or len(data) != row.size:
            wrong.append(row.ref)
            continue
        area.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=cachedir.TEMPORARY_PREFIX, dir=area)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
        out[row.sha256] = path
    if gone:
        shown = ", ".join(f"{r.name} {r.version} ({r.path})" for r in gone[:8])
        more = f" (+{len(gone) - 8} more)" if len(gone) > 8 else ""
        raise ArchiveError(
            f"{where}: the archive no longer serves {len(gone)} locked "
            f"package{'s' if len(gone) != 1 else ''}: {shown}{more}",
            hint="run `layerforge lock --upgrade-os` to lock the versions it serves now, or put "
            f"the .deb files in {area} as <sha256>.deb",
        )
    if wrong:
        raise ArchiveError(
            f"{where}: the archive serves other bytes than the lock names for: " + ", ".join(wrong),
            hint="run `layerforge lock --upgrade-os` (and review the change)",
        )
    return out


def control(deb: Path) -> dict[str, str]:
    """The control stanza of a .deb (``dpkg-deb -f``)."""
    return parse_stanzas(proc.run(["dpkg-deb", "-f", str(deb)]).stdout)[0]


def packages_stanza(fields: dict[str, str], row: DebPackage) -> dict[str, str]:
    """An index stanza for ``row``: its control fields, with the archive's Priority and the
    locked Filename, Size and SHA256."""
    out = {k: v for k, v in fields.items() if k not in ("Priority", "Filename", "Size", "SHA256")}
    out["Priority"] = row.priority
    out["Filename"] = row.path
    out["Size"] = str(row.size)
    out["SHA256"] = row.sha256
    return out


def flat_mirror(
    rows: Iterable[DebPackage], debs: dict[str, Path], directory: Path, suite: str, arch: str
) -> None:
    """A local mirror at ``directory`` of exactly ``rows`` (for ``debootstrap ... file://``):
    the .debs hardlinked at their pool paths, one ``Packages`` index, a ``Release``."""
    stanzas = []
    for row in sorted(rows):
        target = directory / row.path
        if ".." in Path(row.path).parts or Path(row.path).is_absolute():
            raise SourceError(f"a locked package has an unsafe path: {row.path!r}")
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(debs[row.sha256], target)
        except OSError:
            shutil.copyfile(debs[row.sha256], target)
        stanzas.append(packages_stanza(control(target), row))
    index = write_stanzas(stanzas).encode()
    rel = f"main/binary-{arch}/Packages"
    dists = directory / "dists" / suite
    (dists / rel).parent.mkdir(parents=True, exist_ok=True)
    (dists / rel).write_bytes(index)
    release = (
        f"Suite: {suite}\nCodename: {suite}\nArchitectures: {arch}\nComponents: main\n"
        f"SHA256:\n {hashlib.sha256(index).hexdigest()} {len(index)} {rel}\n"
    )
    (dists / "Release").write_text(release)


def flat_repo(rows: Iterable[DebPackage], debs: dict[str, Path], directory: Path, at: str) -> None:
    """A flat apt repository at ``directory`` of exactly ``rows`` (a system step's), to be
    seen at ``at`` inside the sandbox: the .debs hardlinked by their file name, ``Packages``
    (control fields, locked Priority/Size/SHA256), ``Release`` and a ``sources.list`` naming
    it (``trusted``: every .deb was checked against the lock's sha256)."""
    stanzas = []
    directory.mkdir(parents=True, exist_ok=True)
    for row in sorted(rows):
        name = Path(row.path).name
        if not name.endswith(".deb") or name.startswith("."):
            raise SourceError(f"a locked package has an unsafe path: {row.path!r}")
        target = directory / name
        try:
            os.link(debs[row.sha256], target)
        except OSError:
            shutil.copyfile(debs[row.sha256], target)
        stanzas.append(packages_stanza(control(target), replace(row, path=f"./{name}")))
    index = write_stanzas(stanzas).encode()
    (directory / "Packages").write_bytes(index)
    sha = hashlib.sha256(index).hexdigest()
    (directory / "Release").write_text(f"SHA256:\n {sha} {len(index)} Packages\n")
    (directory / "sources.list").write_text(f"deb [trusted=yes] file:{at} ./\n")
