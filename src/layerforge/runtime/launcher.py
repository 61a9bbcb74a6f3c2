"""layerforge-runtime: install an image's runtime groups on first use (standard library only).

Baked into images as the package ``/opt/venv/lib/pythonX.Y/site-packages/layerforge_runtime/``
(this file as its ``__init__.py``, :mod:`layerforge.runtime.wheel` as ``wheel.py``, and a
``__main__.py``), with the script ``/opt/venv/bin/layerforge-runtime``, next to the locked pins
of every runtime group the image may install, ``/opt/layerforge/runtime/GROUP.txt`` (``name==version
--hash=sha256:...``, for ``pip install --require-hashes --no-deps -r``) and ``GROUP.json``
(file name, URL, sha256, size and named index of each wheel). It imports nothing outside the
standard library, so it runs in any image, with or without pip::

    layerforge-runtime ensure llm            # install the group once; later calls do nothing
    layerforge-runtime exec -- CMD ARGS...   # ensure $LAYERFORGE_RUNTIME_GROUPS, then exec CMD
    layerforge-runtime list [--json]         # the groups this image knows, their state, and
                                             # whether each can run here (disk, needs: gpu)
    python -m layerforge_runtime ensure llm  # the same, without the script

Environment:

- ``LAYERFORGE_RUNTIME_GROUPS``: groups ``exec`` (and ``ensure`` without arguments) installs,
  separated by commas or spaces.
- ``LAYERFORGE_RUNTIME_FIND_LINKS``: directories holding the wheels (``:``-separated); looked
  at before any download.
- ``LAYERFORGE_RUNTIME_OFFLINE=1``: never download; wheels must be in the find-links dirs.
- ``LAYERFORGE_RUNTIME_INSTALLER``: ``builtin`` (default: verify each wheel's sha256 and
  unpack it, no pip needed; downloads from the locked URL), ``pip`` or ``uv`` (``install
  --require-hashes --no-deps -r GROUP.txt`` with the interpreter's pip or uv from PATH).
- ``LAYERFORGE_RUNTIME_INDEX_URL``: ``--index-url`` for the pip and uv installers.
- ``LAYERFORGE_RUNTIME_DIR``: where the pins live (default ``/opt/layerforge/runtime``).
- ``LAYERFORGE_RUNTIME_INDEX_<NAME>_USERNAME`` / ``_PASSWORD`` (or uv's ``UV_INDEX_<NAME>_...``,
  or a netrc file, ``$NETRC`` or ``~/.netrc``): credentials for the builtin installer's
  downloads of wheels locked from the named index ``NAME`` (upper-cased, other characters
  as ``_``), sent to that index's host only.
- ``SSL_CERT_FILE``, ``PIP_CERT``, ``LAYERFORGE_RUNTIME_CERT``: the CA bundle downloads
  trust, the first one set wins; else the image's CA store (when it has one), else the CA
  bundle baked next to this file (certifi's). ``https_proxy``/``no_proxy`` are honoured.

Idempotent and safe to start concurrently: a marker ``<prefix>/.layerforge-runtime/GROUP``
holds the sha256 of the group's pins once installed, and installs run under an exclusive
``fcntl`` lock, re-checking the marker after taking it. Exit codes: 0 ok, 1 install failed,
2 usage (unknown group), 3 a wheel could not be fetched (offline?).
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import hashlib
import json
import netrc
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from .wheel import Target, WheelError, install_wheel

DEFAULT_DIR = "/opt/layerforge/runtime"
BAKED_CA = Path(__file__).with_name("cacert.pem")
CA_VARS = ("SSL_CERT_FILE", "PIP_CERT", "LAYERFORGE_RUNTIME_CERT")
SYSTEM_CA = "the system CA store"
BAKED_CA_SOURCE = "the CA bundle baked in the image"
GROUP_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")  # as layerforge.runtime_groups


class RuntimeGroupError(Exception):
    exit_code = 1


class UsageError(RuntimeGroupError):
    exit_code = 2


class FetchError(RuntimeGroupError):
    exit_code = 3


@dataclass(frozen=True)
class Wheel:
    name: str
    version: str
    filename: str
    url: str
    sha256: str
    size: int
    index: str | None = None  # the named index it was locked from (its credentials apply)


@dataclass(frozen=True)
class Settings:
    pins_dir: Path
    find_links: tuple[Path, ...] = ()
    offline: bool = False
    installer: str = "builtin"
    index_url: str | None = None
    env: Mapping[str, str] | None = field(default=None, repr=False)  # index credentials
    ca: CaBundle | None = None  # None: urllib's default (the system store)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        links = [Path(p) for p in env.get("LAYERFORGE_RUNTIME_FIND_LINKS", "").split(":") if p]
        installer = env.get("LAYERFORGE_RUNTIME_INSTALLER", "builtin") or "builtin"
        if installer not in ("builtin", "pip", "uv"):
            raise UsageError(f"LAYERFORGE_RUNTIME_INSTALLER={installer!r}: use builtin, pip or uv")
        return cls(
            Path(env.get("LAYERFORGE_RUNTIME_DIR") or DEFAULT_DIR),
            tuple(links),
            env.get("LAYERFORGE_RUNTIME_OFFLINE", "") not in ("", "0", "false", "no"),
            installer,
            env.get("LAYERFORGE_RUNTIME_INDEX_URL") or None,
            dict(env),
            ca=choose_ca(env),
        )


# -- trust --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaBundle:
    """The CA file (or directory) HTTPS downloads trust, and where the choice came from."""

    path: Path
    source: str  # the variable that named it, SYSTEM_CA or BAKED_CA_SOURCE

    def describe(self) -> str:
        return f"{self.path} ({self.source})"

    def context(self) -> ssl.SSLContext:
        try:
            if self.path.is_dir():
                return ssl.create_default_context(capath=str(self.path))
            return ssl.create_default_context(cafile=str(self.path))
        except (OSError, ssl.SSLError) as exc:
            named = f"{self.source}={self.path}" if self.source in CA_VARS else self.describe()
            raise FetchError(
                f"cannot load the CA bundle {named}: {exc}; point it at a PEM file of CA "
                "certificates"
            ) from None


def choose_ca(
    env: Mapping[str, str],
    system: ssl.DefaultVerifyPaths | None = None,
    baked: Path = BAKED_CA,
) -> CaBundle:
    """SSL_CERT_FILE, PIP_CERT, LAYERFORGE_RUNTIME_CERT, the system store if the image has a
    non-empty one, else the bundle baked next to the launcher."""
    for var in CA_VARS:
        if env.get(var):
            return CaBundle(Path(env[var]), var)
    paths = ssl.get_default_verify_paths() if system is None else system
    if paths.cafile and os.path.isfile(paths.cafile) and os.path.getsize(paths.cafile) > 0:
        return CaBundle(Path(paths.cafile), SYSTEM_CA)
    if paths.capath and os.path.isdir(paths.capath) and os.listdir(paths.capath):
        return CaBundle(Path(paths.capath), SYSTEM_CA)
    return CaBundle(baked, BAKED_CA_SOURCE)


# -- groups -------------------------------------------------------------------------------------


def available(settings: Settings) -> list[str]:
    if not settings.pins_dir.is_dir():
        return []
    return sorted(p.stem for p in settings.pins_dir.glob("*.txt"))


def pins_digest(settings: Settings, group: str) -> str:
    path = settings.pins_dir / f"{group}.txt"
    if not GROUP_RE.match(group) or not path.is_file():
        known = ", ".join(available(settings)) or "none"
        raise UsageError(
            f"this image has no runtime group {group!r} (groups: {known}); declare it under "
            "runtime = { ... } in layerforge.toml and rebuild"
        )
    return hashlib.sha256(path.read_bytes()).hexdigest()


def wheels_of(settings: Settings, group: str) -> list[Wheel]:
    raw = json.loads((settings.pins_dir / f"{group}.json").read_text())
    return [Wheel(**item) for item in raw["wheels"]]


def index_urls(settings: Settings, group: str) -> dict[str, str]:
    """Name -> URL of the named indexes the group's wheels were locked from."""
    raw = json.loads((settings.pins_dir / f"{group}.json").read_text())
    return dict(raw.get("indexes", {}))


def installed(settings: Settings, target: Target, group: str) -> bool:
    marker = target.state / group
    return marker.is_file() and marker.read_text().strip() == pins_digest(settings, group)


def parse_groups(values: Sequence[str]) -> list[str]:
    out: list[str] = []
    for value in values:
        for part in value.replace(",", " ").split():
            if part not in out:
                out.append(part)
    return out


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure(settings: Settings, target: Target, group: str) -> bool:
    """Install ``group`` unless its current pins are installed; True if it installed."""
    digest = pins_digest(settings, group)
    if installed(settings, target, group):
        return False
    with _locked(target.state / f"{group}.lock"):
        if installed(settings, target, group):  # another process got there first
            return False
        if settings.installer == "builtin":
            _builtin(settings, target, group)
        else:
            _external(settings, target, group)
        _atomic_text(target.state / group, digest + "\n")
    return True


def _builtin(settings: Settings, target: Target, group: str) -> None:
    downloads = target.state / "downloads"
    wheels = wheels_of(settings, group)
    total = sum(w.size for w in wheels)
    _say(f"{group}: installing {len(wheels)} distributions ({total / 1e6:.1f} MB of wheels)")
    indexes = index_urls(settings, group)
    for wheel in wheels:
        path = fetch(settings, wheel, downloads, indexes)
        install_wheel(path, target)
        if path.parent == downloads:  # a download is not kept: the install is what counts
            path.unlink()


def _say(message: str) -> None:
    print(f"layerforge-runtime: {message}", file=sys.stderr, flush=True)


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    tmp.replace(path)


# -- fetching -----------------------------------------------------------------------------------


def fetch(
    settings: Settings, wheel: Wheel, downloads: Path, indexes: Mapping[str, str] | None = None
) -> Path:
    """A local, hash-checked copy of ``wheel``: from find-links, else from its locked URL."""
    for directory in settings.find_links:
        candidate = directory / wheel.filename
        if candidate.is_file():
            _check_hash(candidate, wheel)
            return candidate
    local = _local_url(wheel.url)
    if local is not None and local.is_file():
        _check_hash(local, wheel)
        return local
    where = ":".join(map(str, settings.find_links)) or "(none)"
    if settings.offline or local is not None:
        raise FetchError(
            f"{wheel.filename} is not in LAYERFORGE_RUNTIME_FIND_LINKS={where} and downloads "
            "are off; copy the wheel there (`pip download --no-deps` the pins in "
            f"{settings.pins_dir}) or allow network access"
        )
    request = download_request(settings, wheel, indexes or {})
    return _download(wheel, downloads, where, request, settings.ca)


def _local_url(url: str) -> Path | None:
    if url.startswith("file://"):
        return Path(urllib.request.url2pathname(url.removeprefix("file://")))
    if url.startswith("/"):
        return Path(url)
    return None


def _download(
    wheel: Wheel,
    downloads: Path,
    where: str,
    request: urllib.request.Request | None = None,
    ca: CaBundle | None = None,
) -> Path:
    downloads.mkdir(parents=True, exist_ok=True)
    target = downloads / wheel.filename
    context = ca.context() if ca is not None and wheel.url.startswith("https:") else None
    fd, tmp = tempfile.mkstemp(dir=downloads, prefix=".part-")
    try:
        with (
            os.fdopen(fd, "wb") as out,
            urllib.request.urlopen(  # noqa: S310
                request or wheel.url, timeout=60, context=context
            ) as resp,
        ):
            shutil.copyfileobj(resp, out, 1 << 20)
    except (urllib.error.URLError, OSError) as exc:
        Path(tmp).unlink(missing_ok=True)
        _unauthorized(exc, wheel)
        raise FetchError(
            f"cannot download {wheel.filename} from {wheel.url}: {exc}. {_advice(exc, where, ca)}"
        ) from None
    Path(tmp).replace(target)
    _check_hash(target, wheel)
    return target


# -- index credentials --------------------------------------------------------------------------


def _env_name(index: str) -> str:
    return re.sub(r"[^A-Z0-9]", "_", index.upper())


def index_credentials(
    env: Mapping[str, str], index: str | None, url: str
) -> tuple[str, str] | None:
    """(user, password) for a download of ``url``: the index's variables (ours, then uv's),
    else netrc's entry for the URL's host."""
    if index is not None:
        for prefix in ("LAYERFORGE_RUNTIME_INDEX_", "UV_INDEX_"):
            user = env.get(f"{prefix}{_env_name(index)}_USERNAME")
            if user:
                return user, env.get(f"{prefix}{_env_name(index)}_PASSWORD", "")
    host = urllib.parse.urlsplit(url).hostname
    path = env.get("NETRC") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".netrc")
    if host is None or not os.path.isfile(path):
        return None
    try:
        entry = netrc.netrc(path).authenticators(host)
    except (netrc.NetrcParseError, OSError):
        return None
    return None if entry is None else (entry[0], entry[2] or "")


def download_request(
    settings: Settings, wheel: Wheel, indexes: Mapping[str, str]
) -> urllib.request.Request:
    """The download request of ``wheel``, with basic auth when the wheel is on its index's
    host (never sent on to a redirect's host)."""
    request = urllib.request.Request(wheel.url)  # noqa: S310 - the locked URL
    index_url = indexes.get(wheel.index or "", "")
    if wheel.index is not None and _origin(index_url) != _origin(wheel.url):
        return request  # the index's credentials stay with the index's host
    creds = index_credentials(settings.env or {}, wheel.index, wheel.url)
    if creds is not None:
        token = base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
        request.add_unredirected_header("Authorization", f"Basic {token}")
    return request


def _origin(url: str) -> tuple[str, str]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme, parts.netloc.rpartition("@")[2]


def _unauthorized(exc: Exception, wheel: Wheel) -> None:
    if not (isinstance(exc, urllib.error.HTTPError) and exc.code == 401):
        return
    name = _env_name(wheel.index) if wheel.index else "<NAME>"
    raise FetchError(
        f"cannot download {wheel.filename} from {wheel.url}: 401 Unauthorized"
        + (f" by index {wheel.index!r}" if wheel.index else "")
        + f". Set LAYERFORGE_RUNTIME_INDEX_{name}_USERNAME and "
        f"LAYERFORGE_RUNTIME_INDEX_{name}_PASSWORD (or UV_INDEX_{name}_USERNAME/_PASSWORD), "
        "or put the host in a netrc file ($NETRC)"
    )


def _advice(exc: Exception, where: str, ca: CaBundle | None = None) -> str:
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, ssl.SSLCertVerificationError):
        return _cert_advice(ca)
    return (
        "Offline? Put the group's wheels in a directory and set "
        f"LAYERFORGE_RUNTIME_FIND_LINKS (now {where})"
    )


def _cert_advice(ca: CaBundle | None) -> str:
    used = ca.describe() if ca is not None else SYSTEM_CA
    return (
        f"The index's certificate is not signed by a CA in {used}: set SSL_CERT_FILE (or "
        "PIP_CERT, LAYERFORGE_RUNTIME_CERT) to a CA bundle that holds the index's CA, e.g. "
        "one mounted from the host"
    )


def _check_hash(path: Path, wheel: Wheel) -> None:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != wheel.sha256:
        raise RuntimeGroupError(
            f"{path}: sha256 {digest.hexdigest()} does not match the locked {wheel.sha256}; "
            "the file is not the locked wheel (remove it)"
        )


def _external(settings: Settings, target: Target, group: str) -> None:
    """``pip``/``uv`` ``install --require-hashes --no-deps -r GROUP.txt``."""
    reqs = str(settings.pins_dir / f"{group}.txt")
    flags = ["--require-hashes", "--no-deps", "-r", reqs]
    if settings.installer == "uv":
        uv = shutil.which("uv")
        if uv is None:
            raise RuntimeGroupError("LAYERFORGE_RUNTIME_INSTALLER=uv, but uv is not on PATH")
        argv = [uv, "pip", "install", "--python", sys.executable, *flags]
    else:
        argv = [sys.executable, "-m", "pip", "install", "--no-input", *flags]
    if settings.index_url:
        argv += ["--index-url", settings.index_url]
    for link in settings.find_links:
        argv += ["--find-links", str(link)]
    if settings.offline:
        argv.append("--no-index")
    if target != Target.current():
        argv += ["--target", str(target.purelib)]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeGroupError(
            f"{settings.installer} could not install runtime group {group!r}:\n"
            f"{(proc.stderr or proc.stdout)[-3000:]}"
        )


# -- command line -------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="layerforge-runtime", description="Install an image's runtime groups on first use."
    )
    parser.add_argument("--target", type=Path, help="install into DIR instead of this Python")
    sub = parser.add_subparsers(dest="verb", required=True)
    ensure_p = sub.add_parser("ensure", help="install groups (default: $LAYERFORGE_RUNTIME_GROUPS)")
    ensure_p.add_argument("groups", nargs="*")
    exec_p = sub.add_parser("exec", help="ensure groups, then replace this process with CMD")
    exec_p.add_argument("--group", "-g", action="append", default=[], dest="groups")
    exec_p.add_argument("command", nargs=argparse.REMAINDER)
    list_p = sub.add_parser("list", help="groups of this image and whether they are installed")
    list_p.add_argument("--json", action="store_true", dest="as_json")
    return parser


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    args = _parser().parse_args(argv)
    env = os.environ if env is None else env
    try:
        settings = Settings.from_env(env)
        target = (
            Target.current()
            if args.target is None
            else Target.directory(args.target, sys.executable)
        )
        if args.verb == "list":
            return _list(settings, target, as_json=args.as_json)
        groups = parse_groups([*args.groups, env.get("LAYERFORGE_RUNTIME_GROUPS", "")])
        _ensure_all(settings, target, groups)
        if args.verb == "exec":
            return _exec(args.command)
    except RuntimeGroupError as exc:
        _say(f"error: {exc}")
        return exc.exit_code
    except WheelError as exc:
        _say(f"error: {exc}")
        return 1
    except OSError as exc:  # e.g. a read-only root filesystem
        _say(f"error: {exc}; the venv must be writable to install a runtime group")
        return 1
    return 0


def _ensure_all(settings: Settings, target: Target, groups: list[str]) -> None:
    for group in groups:
        did = ensure(settings, target, group)
        _say(f"{group}: {'installed' if did else 'already installed'}")


def _exec(command: list[str]) -> NoReturn:
    command = command[1:] if command[:1] == ["--"] else command
    if not command:
        raise UsageError("exec needs a command: layerforge-runtime exec -- CMD ARGS...")
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvp(command[0], command)  # noqa: S606 - the image's own command
    except OSError as exc:
        raise UsageError(f"cannot run {command[0]!r}: {exc}") from None


def _list(settings: Settings, target: Target, *, as_json: bool) -> int:
    rows = group_rows(settings, target, Host())
    if as_json:
        print(json.dumps({"groups": rows}, indent=2))
        return 0
    for row in rows:
        state = "installed" if row["installed"] else "not installed"
        line = f"{row['group']}: {row['distributions']} distributions, {row['size']} bytes, {state}"
        print(line + _list_notes(row))
    return 0


# -- can it run here? ---------------------------------------------------------------------------

DISK_FACTOR = 3  # unpacked bytes per wheel byte, as layerforge's own disk estimate


@dataclass(frozen=True)
class Host:
    """What ``list`` probes: the filesystem root (``/proc``, ``/dev``) and free disk space."""

    root: Path = Path("/")
    disk_usage: Callable[[Path], shutil._ntuple_diskusage] = shutil.disk_usage

    def gpu(self) -> bool:
        """An NVIDIA GPU is visible: the driver lists one, or its control device exists."""
        gpus = self.root / "proc/driver/nvidia/gpus"
        return (gpus.is_dir() and any(gpus.iterdir())) or (self.root / "dev/nvidiactl").exists()

    def free(self, path: Path) -> int:
        while not path.exists() and path != path.parent:  # the target may not exist yet
            path = path.parent
        return int(self.disk_usage(path).free)


def needs_of(settings: Settings, group: str) -> list[str]:
    raw = json.loads((settings.pins_dir / f"{group}.json").read_text())
    return [str(n) for n in raw.get("needs", [])]


def group_rows(settings: Settings, target: Target, host: Host) -> list[dict[str, object]]:
    """``list``'s rows: each group, its state, and whether it can run here."""
    rows: list[dict[str, object]] = []
    free = host.free(target.purelib)
    has_gpu = host.gpu()
    for group in available(settings):
        wheels = wheels_of(settings, group)
        size = sum(w.size for w in wheels)
        done = installed(settings, target, group)
        needs = needs_of(settings, group)
        fits = done or free >= DISK_FACTOR * size
        met = all(need == "gpu" and has_gpu for need in needs)
        rows.append({
            "group": group,
            "distributions": len(wheels),
            "size": size,
            "installed": done,
            "needs": needs,
            "disk_needed": DISK_FACTOR * size,
            "disk_free": free,
            "fits_disk": fits,
            "gpu": has_gpu,
            "can_run": done or (fits and met),
        })  # fmt: skip
    return rows


def _list_notes(row: Mapping[str, object]) -> str:
    needs = [str(n) for n in row["needs"]] if isinstance(row["needs"], list) else []
    notes = [f"needs {', '.join(needs)}"] if needs else []
    if not row["can_run"]:
        why = [] if row["fits_disk"] else [f"{row['disk_needed']} bytes of disk needed"]
        why += ["no GPU"] if "gpu" in needs and not row["gpu"] else []
        notes.append("cannot run here (" + "; ".join(why) + ")")
    return "".join(f", {n}" for n in notes)


if __name__ == "__main__":
    sys.exit(main())
