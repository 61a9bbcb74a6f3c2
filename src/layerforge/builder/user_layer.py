"""The user layer of a node that declares ``user`` or ``writable`` (see
:mod:`layerforge.manifest.nonroot`): the account lines, the home and the writable
directories, owned by the user.

Made in Python from the parent image's ``/etc/passwd``, ``group``, ``shadow`` and
``gshadow`` (the topmost layer that holds each; only those layers are read), never by
``useradd`` in the sandbox: the same bytes whether the build runs as root or not, and no
date in ``shadow``. A new user gets ``NAME:x:UID:GID::HOME:/usr/sbin/nologin``, a group
line when its gid is new, ``NAME:!:::::::`` in shadow (a locked password, no change date)
when the image has a shadow file, its home (0750) and each writable directory (0755), both
owned ``UID:GID``. The account files keep the mode and owner the parent gave them.

The layer names no parent directory: an image's own (``/var/tmp`` is 1777, ``/var/run`` a
symlink) must not be reset; one the image lacks is created by the unpacker (0755, root).
"""

from __future__ import annotations

import tarfile
from collections.abc import Sequence
from dataclasses import dataclass

from layerforge.errors import BuildError
from layerforge.manifest.nonroot import User
from layerforge.oci.compress import open_layer
from layerforge.oci.layer import Layer
from layerforge.oci.layout import Store
from layerforge.oci.tarball import Entry

PASSWD, GROUP, SHADOW, GSHADOW = "etc/passwd", "etc/group", "etc/shadow", "etc/gshadow"
ACCOUNT_FILES = (PASSWD, GROUP, SHADOW, GSHADOW)
SHELL = "/usr/sbin/nologin"
HOME_MODE = 0o750
WRITABLE_MODE = 0o755


@dataclass(frozen=True)
class AccountFile:
    """One account file of the parent image: its bytes, and the mode and owner it has."""

    data: bytes
    mode: int = 0o644
    uid: int = 0
    gid: int = 0


def needed(user: User | None, writable: Sequence[str]) -> bool:
    """Whether a node gets a user layer: its own non-root user, or writable directories."""
    return bool(writable) or (user is not None and not user.inherited and not user.is_root)


def read_accounts(store: Store, layers: Sequence[Layer]) -> dict[str, AccountFile]:
    """The account files of the image made of ``layers`` (bottom first): each from the
    topmost layer that has it, none when a whiteout (or an opaque ``etc``) hides it. Layers
    below the one that settles the last file are never opened."""
    found: dict[str, AccountFile | None] = {}
    for layer in reversed(layers):
        if len(found) == len(ACCOUNT_FILES):
            break
        here, hidden, opaque = _scan(store, layer)
        for path in ACCOUNT_FILES:
            if path in found:
                continue
            if path in here:
                found[path] = here[path]
            elif path in hidden or opaque:
                found[path] = None
    return {path: f for path, f in found.items() if f is not None}


def _scan(store: Store, layer: Layer) -> tuple[dict[str, AccountFile], set[str], bool]:
    """One layer's account files, the ones it whites out, and whether ``etc`` is opaque."""
    here: dict[str, AccountFile] = {}
    hidden: set[str] = set()
    opaque = False
    desc = layer.descriptor
    with (
        open_layer(store.blob_path(desc.digest), desc.media_type) as stream,
        tarfile.open(fileobj=stream, mode="r|") as tar,
    ):
        for info in tar:
            name = info.name.removeprefix("./").strip("/")
            if name == "etc/.wh..wh..opq":
                opaque = True
            elif name.startswith("etc/.wh.") and f"etc/{name[8:]}" in ACCOUNT_FILES:
                hidden.add(f"etc/{name[8:]}")
            elif name in ACCOUNT_FILES and info.isreg():
                src = tar.extractfile(info)
                assert src is not None
                here[name] = AccountFile(src.read(), info.mode & 0o7777, info.uid, info.gid)
    return here, hidden, opaque


def _lines(data: bytes) -> list[list[str]]:
    text = data.decode("utf-8", "surrogateescape")
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def _append(data: bytes, line: str) -> bytes:
    if data and not data.endswith(b"\n"):
        data += b"\n"
    return data + line.encode() + b"\n"


def _id(fields: list[str], index: int) -> int | None:
    try:
        return int(fields[index])
    except (IndexError, ValueError):
        return None


def user_entries(
    user: User | None,
    writable: Sequence[str],
    accounts: dict[str, AccountFile],
    *,
    section: str = "this node",
) -> list[Entry]:
    """The entries of the user layer (empty: no layer). ``accounts``: the parent's files
    (:func:`read_accounts`), read only for a node's own non-root user."""
    uid, gid = (user.uid, user.gid) if user is not None else (0, 0)
    entries: list[Entry] = []
    if user is not None and not user.inherited and not user.is_root:
        entries += _account_entries(user, accounts, section)
    made = {e.path for e in entries}
    for path in writable:
        member = path.strip("/")
        if member not in made:
            entries.append(Entry(member, "dir", WRITABLE_MODE, uid=uid, gid=gid))
            made.add(member)
    return entries


def _account_entries(user: User, accounts: dict[str, AccountFile], section: str) -> list[Entry]:
    passwd = accounts.get(PASSWD, AccountFile(b""))
    users = _lines(passwd.data)
    by_name = {f[0]: f for f in users}
    by_uid = {_id(f, 2): f for f in users}
    if user.name is not None and user.name in by_name:
        fields = by_name[user.name]
        if (_id(fields, 2), _id(fields, 3)) != (user.uid, user.gid):
            raise BuildError(
                f"{section}.user: user {user.name!r} already exists in the parent image with "
                f"uid {fields[2]} (gid {fields[3] if len(fields) > 3 else '?'}), not "
                f"{user.uid}:{user.gid}",
                hint=f'say which: user = {{ name = "{user.name}", uid = {fields[2]}, '
                f"gid = {fields[3] if len(fields) > 3 else fields[2]} }}, or another name",
            )
        return []  # the image has this user (and its home) already
    if user.uid in by_uid:
        owner = by_uid[user.uid][0]
        if user.name is None:
            return []  # a uid only: the image's user of that uid
        raise BuildError(
            f"{section}.user: uid {user.uid} belongs to {owner!r} in the parent image",
            hint=f"write user = {{ name = {user.name!r}, uid = N }} with a free uid N, or "
            f"user = {owner!r}",
        )
    name = user.login
    entries = [_file(PASSWD, passwd, f"{name}:x:{user.uid}:{user.gid}::{user.home}:{SHELL}")]
    group = accounts.get(GROUP, AccountFile(b""))
    groups = _lines(group.data)
    if user.gid not in {_id(f, 2) for f in groups}:
        if name in {f[0] for f in groups}:
            raise BuildError(
                f"{section}.user: group {name!r} already exists in the parent image with "
                "another gid",
                hint=f"give the user that group: user = {{ name = {name!r}, gid = GID }}",
            )
        entries.append(_file(GROUP, group, f"{name}:x:{user.gid}:"))
        if GSHADOW in accounts:
            entries.append(_file(GSHADOW, accounts[GSHADOW], f"{name}:!::"))
    if SHADOW in accounts:
        entries.append(_file(SHADOW, accounts[SHADOW], f"{name}:!:::::::"))
    entries.append(Entry(user.home.strip("/"), "dir", HOME_MODE, uid=user.uid, gid=user.gid))
    return entries


def _file(path: str, parent: AccountFile, line: str) -> Entry:
    data = _append(parent.data, line)
    return Entry(path, "file", parent.mode, len(data), data=data, uid=parent.uid, gid=parent.gid)


def created_by(user: User | None, writable: Sequence[str]) -> str:
    who = f"user {user.login} ({user.spec})" if user is not None else "root"
    extra = f", writable {', '.join(writable)}" if writable else ""
    return f"layerforge: {who}{extra}"


def split_writable(
    writable: Sequence[str], workdir: str | None, has_app: bool
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(paths for the user layer, paths for the application layer): a service's writable
    directories at or under its ``workdir`` go into its application layer, which would
    otherwise cover them (and verify can keep mounting that layer on its own)."""
    if not has_app or not workdir:
        return tuple(writable), ()
    top = workdir.rstrip("/") or "/"
    inside = tuple(p for p in writable if p == top or p.startswith(top.rstrip("/") + "/"))
    return tuple(p for p in writable if p not in inside), inside


def owned_app_entries(
    entries: list[Entry], user: User | None, writable: Sequence[str]
) -> list[Entry]:
    """The application layer's entries plus its writable directories (``writable``, at or
    under the workdir: :func:`split_writable`), owned by the user, mode 0755 where the
    source lacks them; a source directory there keeps its mode and becomes the user's."""
    if not writable:
        return entries
    uid, gid = (user.uid, user.gid) if user is not None else (0, 0)
    paths = {p.strip("/") for p in writable}
    out = [
        Entry(e.path, e.kind, e.mode, e.size, e.source, e.data, e.linkname, uid, gid)
        if e.kind == "dir" and e.path in paths
        else e
        for e in entries
    ]
    have = {e.path for e in entries}
    out += [Entry(p, "dir", WRITABLE_MODE, uid=uid, gid=gid) for p in sorted(paths - have)]
    return out
