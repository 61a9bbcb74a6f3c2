"""``user``, ``writable``, ``expose`` and ``healthcheck`` of a base or service: who the image
runs as, what that user may write, its ports and its health check.

The check functions raise ValueError (pydantic turns it into a ManifestError naming the
key); :func:`read` turns validated values into the frozen :class:`User` and
:class:`Healthcheck`. The uid is always known from the manifest alone (10001 unless given),
so the content key, the image config, the Dockerfile export and verify agree without
reading the parent image.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import Any

USER_NAME_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
DEFAULT_UID = 10001  # above the ranges distributions allocate (system < 1000, users >= 1000)
MAX_ID = 2**31 - 1
VENV = "/opt/venv"  # stays read-only for the user: never a writable path
PROTOCOLS = ("tcp", "udp", "sctp")
_DURATION_RE = re.compile(r"^(?:\d+(?:h|ms|m|s))+$")
_DURATION_PART_RE = re.compile(r"(\d+)(h|ms|m|s)")
_NS = {"h": 3600 * 10**9, "m": 60 * 10**9, "s": 10**9, "ms": 10**6}


@dataclass(frozen=True)
class User:
    """Who the image runs as: numeric ids always known. ``name`` None: given as a uid only
    (the image's own name for it, or ``u<uid>`` when the user is created)."""

    name: str | None
    uid: int
    gid: int
    home: str
    inherited: bool = False  # from the base (the image config inherits it)

    @property
    def spec(self) -> str:
        """The image config's ``User``: numeric, so that runAsNonRoot can check it."""
        return f"{self.uid}:{self.gid}"

    @property
    def login(self) -> str:
        """The name a new passwd entry gets."""
        return self.name or f"u{self.uid}"

    @property
    def is_root(self) -> bool:
        return self.uid == 0

    def key_doc(self) -> list[Any]:
        return [self.name, self.uid, self.gid, self.home]


@dataclass(frozen=True)
class Healthcheck:
    """Docker's config ``Healthcheck``: durations in nanoseconds, as Docker stores them."""

    test: tuple[str, ...]  # ("CMD", argv...) | ("CMD-SHELL", line) | ("NONE",)
    interval: int | None = None
    timeout: int | None = None
    start_period: int | None = None
    retries: int | None = None

    def config(self) -> dict[str, Any]:
        out: dict[str, Any] = {"Test": list(self.test)}
        for key, value in (
            ("Interval", self.interval),
            ("Timeout", self.timeout),
            ("StartPeriod", self.start_period),
            ("Retries", self.retries),
        ):
            if value is not None:
                out[key] = value
        return out


# -- checks (ValueError) ------------------------------------------------------------------------


def _check_id(value: int, what: str) -> int:
    if isinstance(value, bool) or not 0 <= value <= MAX_ID:
        raise ValueError(f"{value!r} is not a valid {what}: use 0..{MAX_ID}")
    return value


def _check_name(name: str) -> str:
    if not USER_NAME_RE.match(name):
        raise ValueError(
            f"{name!r} is not a valid user name: use lowercase letters, digits, '_' or '-', "
            "starting with a letter or '_', at most 32 characters (e.g. 'app')"
        )
    return name


def _check_home(home: str) -> str:
    if not home.startswith("/") or posixpath.normpath(home) != home or home == "/":
        raise ValueError(f"home {home!r} must be an absolute, normalised path such as '/home/app'")
    return home


def check_user(value: object) -> object:
    """``"app"``, ``"10001"``, ``"10001:10001"``, ``10001``, or a table
    ``{ name, uid, gid, home }``; raises ValueError."""
    user_from(value)
    return value


def user_from(value: object) -> User:
    if isinstance(value, bool):
        raise ValueError("user must be a name, a uid[:gid] or a table, not true/false")
    if isinstance(value, int):
        uid = _check_id(value, "uid")
        return _user(None, uid, uid, None)
    if isinstance(value, str):
        if value == "root":
            return _user("root", 0, 0, None)
        match = re.fullmatch(r"(\d+)(?::(\d+))?", value)
        if match:
            uid = _check_id(int(match[1]), "uid")
            gid = _check_id(int(match[2]), "gid") if match[2] else uid
            return _user(None, uid, gid, None)
        if ":" in value or not value or value[0].isdigit() or value[0] == "-":
            raise ValueError(
                f"{value!r} is not a valid user: write a name ('app'), a uid ('10001'), "
                "uid:gid ('10001:10001') or a table { name, uid, gid, home }"
            )
        return _user(_check_name(value), None, None, None)
    if isinstance(value, dict):
        name, home = value.get("name"), value.get("home")
        table_uid, table_gid = value.get("uid"), value.get("gid")
        return _user(
            None if name is None else _check_name(name),
            None if table_uid is None else _check_id(table_uid, "uid"),
            None if table_gid is None else _check_id(table_gid, "gid"),
            None if home is None else _check_home(home),
        )
    raise ValueError("user must be a name, a uid[:gid] or a table { name, uid, gid, home }")


def _user(name: str | None, uid: int | None, gid: int | None, home: str | None) -> User:
    if name == "root" or (uid == 0 and name is None):
        if (uid or 0) != 0 or (gid or 0) != 0:
            raise ValueError("root is uid 0, gid 0")
        return User("root", 0, 0, home or "/root")
    if uid == 0:
        raise ValueError(f"uid 0 is root: write user = 'root', not {name!r} with uid 0")
    uid = DEFAULT_UID if uid is None else uid
    gid = uid if gid is None else gid
    return User(name, uid, gid, home or f"/home/{name or f'u{uid}'}")


def check_writable(value: tuple[str, ...]) -> tuple[str, ...]:
    seen: set[str] = set()
    for path in value:
        clean = path.rstrip("/") or "/"
        if not path.startswith("/"):
            raise ValueError(f"writable path {path!r} must be absolute, e.g. '/app/cache'")
        if clean == "/":
            raise ValueError(
                "writable path '/' would make the whole image writable; name directories"
            )
        if any(part in (".", "..") for part in clean.split("/")) or "//" in clean:
            raise ValueError(f"writable path {path!r} has an empty, '.' or '..' component")
        if clean == VENV or clean.startswith(VENV + "/"):
            raise ValueError(
                f"writable path {path!r} is inside {VENV}, which stays read-only for the user"
            )
        if clean in seen:
            raise ValueError(f"writable path {path!r} is listed twice")
        seen.add(clean)
    return value


def port_from(value: object) -> str:
    """``8000`` or ``"8000"`` -> ``"8000/tcp"``; ``"9000/udp"`` kept."""
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    match = re.fullmatch(r"(\d{1,5})(?:/(tcp|udp|sctp))?", text) if isinstance(text, str) else None
    if match is None or not 1 <= int(match[1]) <= 65535:
        raise ValueError(
            f"{value!r} is not a port: write a number 1..65535, or 'PORT/PROTO' with PROTO one "
            f"of {', '.join(PROTOCOLS)} (e.g. 8000 or '9000/udp')"
        )
    return f"{int(match[1])}/{match[2] or 'tcp'}"


def check_expose(value: tuple[int | str, ...]) -> tuple[int | str, ...]:
    for port in value:
        port_from(port)
    return value


def duration_ns(value: str) -> int:
    if not _DURATION_RE.match(value):
        raise ValueError(
            f"duration {value!r}: write a number with a unit (h, m, s, ms), e.g. '30s' or '1m30s'"
        )
    return sum(int(n) * _NS[unit] for n, unit in _DURATION_PART_RE.findall(value))


def check_healthcheck(value: object) -> object:
    healthcheck_from(value)
    return value


def healthcheck_from(value: object) -> Healthcheck | None:
    if value is None:
        return None
    if value is True:
        raise ValueError(
            "healthcheck = true says nothing to run: write a table "
            "{ command = [...], interval = '30s', ... }, or false to turn an inherited one off"
        )
    if value is False:
        return Healthcheck(("NONE",))
    if not isinstance(value, dict):
        raise ValueError("healthcheck must be a table { command, interval, ... } or false")
    command = value.get("command")
    test: tuple[str, ...]
    if isinstance(command, str) and command.strip():
        if "\n" in command or "\r" in command:
            raise ValueError("healthcheck command holds a newline: write one shell line")
        test = ("CMD-SHELL", command)
    elif isinstance(command, list | tuple) and command and all(isinstance(c, str) for c in command):
        test = ("CMD", *command)
    else:
        raise ValueError(
            "healthcheck needs a command: a list (exec form) or a non-empty shell string"
        )
    retries = value.get("retries")
    if retries is not None and (isinstance(retries, bool) or retries < 0):
        raise ValueError(f"healthcheck retries must be a number >= 0, not {retries!r}")
    durations = {}
    for key in ("interval", "timeout", "start_period"):
        written = value.get(key)
        durations[key] = None if written is None else duration_ns(written)
    return Healthcheck(test, retries=retries, **durations)


def read(node: dict[str, Any]) -> dict[str, Any]:
    """The Node fields of a validated base or service table."""
    user = node.get("user")
    return {
        "user": None if user is None else user_from(user),
        "writable": tuple(p.rstrip("/") for p in node.get("writable") or ()),
        "expose": tuple(dict.fromkeys(port_from(p) for p in node.get("expose") or ())),
        "healthcheck": healthcheck_from(node.get("healthcheck")),
    }


def format_duration(ns: int) -> str:
    """Nanoseconds as a Dockerfile duration ('30s', '1500ms')."""
    if ns % 10**9 == 0:
        return f"{ns // 10**9}s"
    if ns % 10**6 == 0:
        return f"{ns // 10**6}ms"
    return f"{ns}ns"
