"""Issue 14 item 2: the user layer (passwd/group/shadow lines, home, writable directories),
made from the parent image's account files: bytes in, entries out."""

from __future__ import annotations

from pathlib import Path

import pytest

from layerforge.builder.user_layer import (
    AccountFile,
    owned_app_entries,
    read_accounts,
    split_writable,
    user_entries,
)
from layerforge.errors import BuildError
from layerforge.manifest.nonroot import User, user_from
from layerforge.oci.layer import Layer
from layerforge.oci.layout import Store
from layerforge.oci.tarball import Entry
from layerforge.oci.write import write_layer_to_store

PASSWD = (
    b"root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
)
GROUP = b"root:x:0:\nshadow:x:42:\nnogroup:x:65534:\n"
SHADOW = b"root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n"


def _accounts(**extra: bytes) -> dict[str, AccountFile]:
    files = {"etc/passwd": PASSWD, "etc/group": GROUP, "etc/shadow": SHADOW, **extra}
    modes = {"etc/shadow": (0o640, 0, 42)}
    return {
        path: AccountFile(data, *modes.get(path, (0o644, 0, 0))) for path, data in files.items()
    }


def _by_path(entries: list[Entry]) -> dict[str, Entry]:
    return {e.path: e for e in entries}


def test_user_appended_to_parent_passwd() -> None:
    user = user_from("app")
    entries = _by_path(user_entries(user, ("/srv/cache",), _accounts()))
    assert set(entries) == {"etc/passwd", "etc/group", "etc/shadow", "home/app", "srv/cache"}
    assert (
        entries["etc/passwd"].data == PASSWD + b"app:x:10001:10001::/home/app:/usr/sbin/nologin\n"
    )
    assert entries["etc/group"].data == GROUP + b"app:x:10001:\n"
    assert entries["etc/shadow"].data == SHADOW + b"app:!:::::::\n"
    shadow = entries["etc/shadow"]
    assert (shadow.mode, shadow.uid, shadow.gid) == (0o640, 0, 42)  # as the parent had it
    home = entries["home/app"]
    assert (home.kind, home.mode, home.uid, home.gid) == ("dir", 0o750, 10001, 10001)
    cache = entries["srv/cache"]
    assert (cache.kind, cache.mode, cache.uid, cache.gid) == ("dir", 0o755, 10001, 10001)


def test_existing_user_reused_not_duplicated() -> None:
    passwd = PASSWD + b"app:x:10001:10001::/home/app:/bin/sh\n"
    entries = _by_path(
        user_entries(user_from("app"), ("/data",), _accounts(**{"etc/passwd": passwd}))
    )
    assert set(entries) == {"data"}  # no account line, no home: the image has them
    assert (entries["data"].uid, entries["data"].gid) == (10001, 10001)
    by_uid = _by_path(user_entries(user_from("10001"), (), _accounts(**{"etc/passwd": passwd})))
    assert by_uid == {}


def test_existing_user_with_another_uid_is_a_clear_error() -> None:
    passwd = PASSWD + b"app:x:1000:1000::/home/app:/bin/sh\n"
    with pytest.raises(BuildError) as info:
        user_entries(user_from("app"), (), _accounts(**{"etc/passwd": passwd}), section="bases.cpu")
    text = str(info.value) + (info.value.hint or "")
    assert "bases.cpu.user" in text and "uid 1000" in text
    assert 'user = { name = "app", uid = 1000, gid = 1000 }' in text
    taken = PASSWD + b"other:x:10001:10001::/:/bin/sh\n"
    with pytest.raises(BuildError, match="'other'"):
        user_entries(user_from("app"), (), _accounts(**{"etc/passwd": taken}))


def test_uid_only_user_gets_a_name_and_group_reuse() -> None:
    group = GROUP + b"staff:x:50:\n"
    entries = _by_path(user_entries(user_from("10002:50"), (), _accounts(**{"etc/group": group})))
    assert (entries["etc/passwd"].data or b"").endswith(
        b"u10002:x:10002:50::/home/u10002:/usr/sbin/nologin\n"
    )
    assert "etc/group" not in entries  # gid 50 exists: no new group


def test_no_account_files_in_the_parent() -> None:
    entries = _by_path(user_entries(user_from("app"), (), {}))
    assert entries["etc/passwd"].data == b"app:x:10001:10001::/home/app:/usr/sbin/nologin\n"
    assert entries["etc/group"].data == b"app:x:10001:\n"
    assert "etc/shadow" not in entries


def test_inherited_or_root_user_only_makes_writable_dirs() -> None:
    inherited = User("app", 10001, 10001, "/home/app", inherited=True)
    assert [(e.path, e.uid) for e in user_entries(inherited, ("/app/cache",), _accounts())] == [
        ("app/cache", 10001)
    ]
    assert [(e.path, e.uid) for e in user_entries(None, ("/tmp/x",), _accounts())] == [("tmp/x", 0)]
    assert user_entries(user_from("root"), (), _accounts()) == []


def _layer(store: Store, files: dict[str, bytes | None]) -> Layer:
    entries = []
    for path, data in files.items():
        if data is None:
            entries.append(Entry(path, "dir", 0o755))
        else:
            entries.append(
                Entry(path, "file", 0o600 if "shadow" in path else 0o644, len(data), data=data)
            )
    return Layer.from_blob(write_layer_to_store(store, entries), "test")


def test_read_accounts_takes_the_topmost_and_honours_whiteouts(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store", create=True)
    low = _layer(store, {"etc/passwd": b"low\n", "etc/group": b"g\n", "etc/shadow": b"s\n"})
    high = _layer(store, {"etc/passwd": b"high\n", "etc/.wh.shadow": b""})
    found = read_accounts(store, (low, high))
    assert found["etc/passwd"].data == b"high\n"
    assert found["etc/group"].data == b"g\n"
    assert "etc/shadow" not in found
    assert found["etc/group"].mode == 0o644


def test_read_accounts_reads_only_what_it_needs(tmp_path: Path) -> None:
    """Layers below the one holding every account file are never opened (a missing blob
    there would fail the read)."""
    store = Store.open(tmp_path / "store", create=True)
    low = _layer(store, {"etc/passwd": b"low\n"})
    high = _layer(store, {"etc/passwd": b"p\n", "etc/group": b"g\n", "etc/shadow": b"s\n",
                          "etc/gshadow": b"gs\n"})  # fmt: skip
    store.blob_path(low.descriptor.digest).unlink()
    assert read_accounts(store, (low, high))["etc/passwd"].data == b"p\n"


def test_writable_dirs_under_a_services_workdir_go_into_its_application_layer() -> None:
    assert split_writable(("/srv/x", "/app/cache", "/app"), "/app", True) == (
        ("/srv/x",),
        ("/app/cache", "/app"),
    )
    assert split_writable(("/app/cache",), "/app", False) == (("/app/cache",), ())
    assert split_writable(("/application",), "/app", True) == (("/application",), ())
    user = user_from("app")
    source = [Entry("app", "dir", 0o755), Entry("app/data", "dir", 0o700)]
    entries = _by_path(owned_app_entries(source, user, ("/app/data", "/app/cache")))
    assert (entries["app"].uid, entries["app/data"].uid, entries["app/data"].mode) == (
        0,
        10001,
        0o700,
    )
    cache = entries["app/cache"]
    assert (cache.kind, cache.mode, cache.uid, cache.gid) == ("dir", 0o755, 10001, 10001)
