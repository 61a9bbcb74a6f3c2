"""OS sources of kind ``debootstrap``: run ``debootstrap`` once per (suite, variant,
packages) and cache the root filesystem under the cache directory; the identity is the exact
list of Debian packages (``_dpkg_identity``, which feeds the root base's content key: its bytes
must never change, nor those of ``debootstrap_key``, which names the cache entry).
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
from layerforge.manifest import OSSource, did_you_mean
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


def _dpkg_identity(rootfs: Path) -> str:
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
    rootfs = debootstrap_rootfs(source, ctx.cache_dir, ctx.reporter, where)
    python = find_python(rootfs, ctx.python, where)
    layer = layer_from_dir(ctx, rootfs, source.describe())
    return BaseImage(
        _dpkg_identity(rootfs), source.describe(), (layer,), DEFAULT_ENV, python, find_libc(rootfs)
    )
