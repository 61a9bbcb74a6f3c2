"""OS sources of kind ``debootstrap``: run ``debootstrap`` once per (suite, variant,
packages) and cache the root filesystem under the cache directory; the identity is the exact
list of Debian packages (``dpkg_identity``, which feeds the root base's content key: its bytes
must never change, nor those of ``debootstrap_key``, which names the cache entry).

With a version-2 lock the root is made from the locked rows instead (:func:`locked_rootfs`):
the exact .deb files, from a local mirror, into a cache entry named by the rows
(:func:`locked_debootstrap_key`). ``lock`` reads the rows with :func:`lock_rows`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

from layerforge import cachedir, proc
from layerforge.errors import SourceError
from layerforge.events import Event, Reporter
from layerforge.lock.lockfile import ArchiveState, DebPackage
from layerforge.manifest import OSSource, did_you_mean
from layerforge.sources import debian
from layerforge.sources.base import (
    DEFAULT_ENV,
    SOURCE_FORMAT,
    BaseImage,
    SourceContext,
    find_libc,
    find_python,
    layer_from_dir,
)


def debootstrap_key(source: OSSource) -> str:
    doc = [SOURCE_FORMAT, source.spec, source.variant, sorted({"python3", *source.packages})]
    # default json separators, not fsutil.digest_json: this key names cache directories that
    # exist on users' machines; it must keep its bytes
    return hashlib.sha256(json.dumps(doc).encode()).hexdigest()[:24]


def debootstrap_rootfs(
    source: OSSource, cache_dir: Path, reporter: Reporter, where: str = "from"
) -> Path:
    """Run debootstrap once per inputs; return the cached root filesystem directory."""
    final = cachedir.DEBOOTSTRAP.path(cache_dir, debootstrap_key(source))
    if (final / "rootfs").is_dir():
        return final / "rootfs"
    _check_suite(source.spec, where)
    final.parent.mkdir(parents=True, exist_ok=True)
    packages = ",".join(sorted({"python3", *source.packages}))
    work = Path(tempfile.mkdtemp(prefix=".tmp-", dir=final.parent))
    task = f"debootstrap:{source.spec}"
    reporter.emit(Event("start", task, f"debootstrap {source.spec} ({packages})"))
    try:
        proc.run(
            [
                "debootstrap",
                f"--variant={source.variant}",
                f"--include={packages}",
                source.spec,
                str(work / "rootfs"),
            ]
        )
        _normalize_debian(work / "rootfs")
        work.rename(final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    reporter.emit(Event("finish", task, data={"ok": True}))
    return final / "rootfs"


DEBOOTSTRAP_SCRIPTS = Path("/usr/share/debootstrap/scripts")


def _check_suite(suite: str, where: str, scripts: Path = DEBOOTSTRAP_SCRIPTS) -> None:
    """A suite debootstrap has no script for is a mistake in the manifest (exit 2)."""
    if not scripts.is_dir() or (scripts / suite).exists():
        return  # no debootstrap here: running it gives the real error
    known = sorted(p.name for p in scripts.iterdir() if not p.name.startswith("."))
    raise SourceError(
        f"{where}: debootstrap knows no suite {suite!r}{did_you_mean(suite, known)}",
        hint="use a Debian or Ubuntu suite name such as 'bookworm' or 'trixie' "
        f"(scripts in {scripts})",
    )


def _normalize_debian(rootfs: Path) -> None:
    """Drop what differs between two runs and never belongs in a layer."""
    for rel in ("var/cache/apt", "var/lib/apt/lists", "var/log", "var/cache/debconf"):
        directory = rootfs / rel
        if directory.is_dir():
            for child in directory.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                elif child.name != "lock":
                    child.unlink()
    for stale in ("var/cache/ldconfig/aux-cache", "etc/machine-id"):
        (rootfs / stale).unlink(missing_ok=True)


def dpkg_identity(rootfs: Path) -> str:
    status = rootfs / "var/lib/dpkg/status"
    pkgs: list[str] = []
    name = ""
    for line in status.read_text(errors="replace").splitlines():
        if line.startswith("Package: "):
            name = line.split(": ", 1)[1]
        elif line.startswith("Version: ") and name:
            pkgs.append(f"{name}={line.split(': ', 1)[1]}")
    # the OS source identity feeds the root base's content key: never change these bytes
    # (default json separators, unlike fsutil.digest_json)
    raw = json.dumps(sorted(pkgs)).encode()
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def materialize_debootstrap(source: OSSource, ctx: SourceContext, where: str) -> BaseImage:
    if ctx.os_rows:  # a version-2 lock: exactly the locked packages
        mirror = ctx.mirror or debian.default_mirror()
        rootfs = locked_rootfs(source, ctx.os_rows, ctx.cache_dir, ctx.reporter, where, mirror)
        identity = debian.identity_of(ctx.os_rows)
    else:
        rootfs = debootstrap_rootfs(source, ctx.cache_dir, ctx.reporter, where)
        identity = dpkg_identity(rootfs)
    python = find_python(rootfs, ctx.python, where)
    layer = layer_from_dir(ctx, rootfs, source.describe())
    return BaseImage(identity, source.describe(), (layer,), DEFAULT_ENV, python, find_libc(rootfs))


# -- locked roots (lock version 2) ----------------------------------------------------------------


def locked_debootstrap_key(source: OSSource, rows: tuple[DebPackage, ...]) -> str:
    """The cache entry of a root made from ``rows`` (never one of :func:`debootstrap_key`)."""
    doc = [SOURCE_FORMAT, "locked", source.spec, source.variant, debian.rows_key(rows)]
    return hashlib.sha256(json.dumps(doc).encode()).hexdigest()[:24]


def _arch(rows: tuple[DebPackage, ...]) -> str:
    return next((r.arch for r in rows if r.arch != "all"), None) or debian.host_arch()


def locked_rootfs(
    source: OSSource,
    rows: tuple[DebPackage, ...],
    cache_dir: Path,
    reporter: Reporter,
    where: str,
    mirror: str,
) -> Path:
    """The root of exactly ``rows``: their .debs (cached by sha256, fetched first, every
    missing one named at once), a local mirror of them, debootstrap from it. The root's
    ``sources.list`` names ``mirror`` as a network run would; ``var/lib/dpkg/available``
    (which depends on the local index's text) is emptied."""
    final = cachedir.DEBOOTSTRAP.path(cache_dir, locked_debootstrap_key(source, rows))
    if (final / "rootfs").is_dir():
        return final / "rootfs"
    _check_suite(source.spec, where)
    debs = debian.fetch_debs(rows, mirror, cache_dir, where)
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".tmp-", dir=final.parent))
    task = f"debootstrap:{source.spec}"
    reporter.emit(Event("start", task, f"debootstrap {source.spec} ({len(rows)} locked packages)"))
    try:
        debian.flat_mirror(rows, debs, work / "mirror", source.spec, _arch(rows))
        rootfs = work / "rootfs"
        proc.run(
            [
                "debootstrap",
                f"--variant={source.variant}",
                "--no-check-gpg",  # every .deb was checked against the lock's sha256
                f"--include={','.join(sorted({r.name for r in rows}))}",
                source.spec,
                str(rootfs),
                (work / "mirror").as_uri(),
            ]
        )
        (rootfs / "etc/apt/sources.list").write_text(f"deb {mirror} {source.spec} main\n")
        (rootfs / "var/lib/dpkg/available").write_bytes(b"")
        _normalize_debian(rootfs)
        _check_installed(rootfs, rows, where)
        shutil.rmtree(work / "mirror")
        work.rename(final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    reporter.emit(Event("finish", task, data={"ok": True}))
    return final / "rootfs"


def _check_installed(rootfs: Path, rows: tuple[DebPackage, ...], where: str) -> None:
    got = dpkg_identity(rootfs)
    if got != debian.identity_of(rows):
        raise SourceError(
            f"{where}: debootstrap installed other packages than the lock names "
            f"({got[:19]} != {debian.identity_of(rows)[:19]})",
            hint="the locked set is not closed under its dependencies (edited by hand?): "
            "run `layerforge lock --upgrade-os`",
        )


def lock_rows(
    source: OSSource,
    cache_dir: Path,
    reporter: Reporter,
    where: str,
    mirror: str,
    *,
    fresh: bool,
) -> tuple[tuple[DebPackage, ...], tuple[ArchiveState, ...]]:
    """The rows of a root as the archive serves it now, and the archive state they were read
    from (its signed InRelease). Without ``fresh``, the packages of this machine's cached
    root are taken when the archive still serves every one of them; otherwise (and with
    ``fresh``: ``lock --upgrade-os``) the set debootstrap picks today
    (``debootstrap --print-debs``), at the versions the archive serves."""
    task = f"lock-os:{source.spec}"
    reporter.emit(Event("start", task, f"reading the Debian archive ({source.spec})"))
    _check_suite(source.spec, where)
    release = debian.fetch_release(mirror, source.spec, where)
    arch = debian.host_arch()
    index = debian.fetch_packages(mirror, release, arch, where)
    rows: tuple[DebPackage, ...] = ()
    if not fresh:
        rootfs = debootstrap_rootfs(source, cache_dir, reporter, where)
        status = (rootfs / "var/lib/dpkg/status").read_text(errors="replace")
        rows, missing = debian.rows_for(debian.installed(status), index, source.spec)
        if missing:
            rows = ()  # the cached root is older than the archive: take today's set
    if not rows:
        names = _print_debs(source, cache_dir)
        rows, missing = debian.rows_for(debian.newest(index, names, arch), index, source.spec)
        if missing:
            raise SourceError(
                f"{where}: the archive's {source.spec} index has no {', '.join(missing[:5])}",
                hint="check the packages of the debootstrap source",
            )
    reporter.emit(Event("finish", task, f"{len(rows)} Debian packages", data={"ok": True}))
    return rows, (release.state,)


def _print_debs(source: OSSource, cache_dir: Path) -> list[str]:
    """The packages debootstrap would install today (it reads the archive's index)."""
    packages = ",".join(sorted({"python3", *source.packages}))
    area = cachedir.DEBOOTSTRAP.path(cache_dir)
    area.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".tmp-", dir=area))
    try:
        out = proc.run(
            [
                "debootstrap",
                "--print-debs",
                f"--variant={source.variant}",
                f"--include={packages}",
                source.spec,
                str(work / "target"),
            ]
        ).stdout
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return sorted(set(out.split()))
