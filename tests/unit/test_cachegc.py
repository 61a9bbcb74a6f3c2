"""gc of the machine cache directory: real files in temporary directories, a real store."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from layerforge import cachedir
from layerforge.api import Workspace
from layerforge.gc import storegc
from layerforge.gc.cachegc import GC_PREFIX, CacheGcResult, collect_caches, remove_entry
from layerforge.oci import media
from layerforge.oci.layout import Descriptor, Store, canonical_json
from layerforge.oci.unpack import chain_id
from layerforge.records import records_dir
from tests.conftest import EXAMPLE

OLD = 1000.0  # an mtime long past the grace period


def _image(store: Store, node: str, layers: list[bytes], hex12: str, age: float) -> list[str]:
    digests = [store.put_bytes(p) for p in layers]
    config = store.put_bytes(canonical_json({"rootfs": {"diff_ids": []}, "n": hex12}))
    manifest = canonical_json({
        "schemaVersion": 2, "mediaType": media.OCI_MANIFEST,
        "config": {"mediaType": media.OCI_CONFIG, "digest": config, "size": 1},
        "layers": [{"mediaType": media.OCI_LAYER_GZIP, "digest": d, "size": 1} for d in digests],
    })  # fmt: skip
    desc = Descriptor(media.OCI_MANIFEST, store.put_bytes(manifest), len(manifest))
    store.tag_many({f"{node}:lf-{hex12}": desc})
    record = records_dir(store.root) / f"{hex12}.json"
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text("{}")
    os.utime(record, (age, age))
    return digests


def _age(path: Path, when: float = OLD) -> Path:
    """Set the mtime of ``path`` and of everything under it."""
    for top, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            os.utime(os.path.join(top, name), (when, when), follow_symlinks=False)
    os.utime(path, (when, when), follow_symlinks=False)
    return path


def _entry(path: Path, payload: bytes = b"x" * 5000, *, old: bool = True) -> Path:
    """A directory entry holding one file (``rootfs/file``)."""
    (path / "rootfs").mkdir(parents=True)
    (path / "rootfs" / "file").write_bytes(payload)
    return _age(path) if old else path


def _hex32(digest: str) -> str:
    return digest.split(":", 1)[1][:32]


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Path]:
    """A store whose gc drops api's old key, and a cache with one entry of every kind."""
    store = Store.open(tmp_path / "store")
    old = _image(store, "api", [b"os layer", b"old app"], "a" * 12, 1000)
    new = _image(store, "api", [b"os layer", b"new app"], "b" * 12, 2000)
    store.tag("api:latest", store.tags()[f"api:lf-{'b' * 12}"])
    cache = tmp_path / "cache"
    paths = {
        "live_chain": _entry(cache / "roots" / chain_id(new)),
        "live_lower": _entry(cache / "roots" / chain_id(new[:1])),
        "dead_chain": _entry(cache / "roots" / chain_id(old)),
        "stray_chain": _entry(cache / "roots" / ("c" * 32)),
        "fresh_dead": _entry(cache / "roots" / ("d" * 32), old=False),
        "tarball": _entry(cache / "tarballs" / ("e" * 24)),
        "live_app": _entry(cache / "layers" / _hex32(new[1])),
        "dead_app": _entry(cache / "layers" / _hex32(old[1])),
        "dead_image": _entry(cache / "unpacked" / ("f" * 32)),
        "debootstrap": _entry(cache / "debootstrap" / ("1" * 24)),
        "downloads": _entry(cache / "sandbox" / "apt"),
        "old_tmp": _entry(cache / "roots" / ".tmp-abc"),
        "old_stage": _entry(cache / "stage" / "system-abc"),
        "busy_stage": _entry(cache / "stage" / "api-xyz"),
        "gc_leftover": _entry(cache / "layers" / f"{GC_PREFIX}1234-{'9' * 32}", old=False),
        "unknown": _entry(cache / "roots" / "notes"),
        "other_area": _entry(cache / "mine" / ("c" * 32)),
    }
    (paths["busy_stage"] / "rootfs" / "file").touch()  # a build is writing deep inside
    layers = cache / "sandbox" / "layers"
    layers.mkdir(parents=True)
    paths["system_json"] = layers / "k.json"
    paths["system_json"].write_text("{}")
    _age(paths["system_json"])
    paths["system_tmp"] = layers / ".tmp-77-k.blob"
    paths["system_tmp"].write_bytes(b"half")
    _age(paths["system_tmp"])
    return {"store": store.root, "cache": cache, **paths}


GOES = {"dead_chain", "stray_chain", "dead_app", "dead_image", "old_tmp", "old_stage"}
GOES |= {"gc_leftover", "system_tmp"}
INPUT_KEYED = {"tarball", "debootstrap", "downloads", "system_json"}


def _run(world: dict[str, Path], **kwargs: bool) -> CacheGcResult:
    store = Store.open(world["store"], create=False)
    result = storegc.collect(store, keep=1, dry_run=bool(kwargs.get("dry_run")))
    return collect_caches(world["cache"], store, None, result, **kwargs)


def _present(world: dict[str, Path]) -> set[str]:
    return {name for name, path in world.items() if os.path.lexists(path)}


def test_removes_exactly_what_no_store_reaches_and_stale_temporaries(
    world: dict[str, Path],
) -> None:
    before = _present(world)
    dry = _run(world, dry_run=True)
    assert _present(world) == before  # a dry run changes nothing
    result = _run(world)
    assert {e.path for e in result.removed} == {world[n] for n in GOES}
    assert [e.to_json() for e in dry.removed] == [e.to_json() for e in result.removed]
    assert _present(world) == before - GOES
    assert not list(world["cache"].rglob(f"{GC_PREFIX}*"))  # nothing half-deleted
    kinds = {e.path: e.kind for e in result.removed}
    assert kinds[world["dead_chain"]] == "chain" and kinds[world["dead_image"]] == "image"
    assert kinds[world["old_stage"]] == "temporary"
    assert result.by_area()["roots"][0] == 3  # dead, stray, .tmp
    assert result.freed == sum(e.size for e in result.removed) > 5000 * 4
    doc = result.to_json()
    assert doc["freed"] == result.freed and doc["skipped"] is None
    assert set(doc["by_area"]) == {"layers", "roots", "sandbox/layers", "stage", "unpacked"}
    again = _run(world)
    assert again.removed == ()  # idempotent


def test_all_caches_also_removes_the_input_keyed_entries(world: dict[str, Path]) -> None:
    result = _run(world, all_caches=True)
    assert {e.path for e in result.removed} == {world[n] for n in GOES | INPUT_KEYED}
    assert {"live_chain", "fresh_dead", "busy_stage", "unknown", "other_area"} <= _present(world)


def test_entries_of_another_known_store_are_kept(world: dict[str, Path], tmp_path: Path) -> None:
    other = Store.open(tmp_path / "other")
    dead = _image(other, "x", [b"os layer", b"old app"], "c" * 12, 1000)  # same layers
    assert chain_id(dead) == world["dead_chain"].name
    cachedir.register(world["cache"], other.root, None)
    gone = tmp_path / "gone-store"
    cachedir.register(world["cache"], gone, tmp_path / "gone" / "layerforge.toml")
    result = _run(world)
    assert world["dead_chain"].is_dir() and world["dead_app"].is_dir()
    assert not world["stray_chain"].exists()
    assert set(result.stores) == {world["store"], other.root}
    assert result.forgotten == (gone,)
    assert {k.store for k in cachedir.known_stores(world["cache"])} == {
        world["store"],
        other.root,
    }


def test_os_images_pinned_by_the_lock_are_kept(world: dict[str, Path], tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(EXAMPLE / "layerforge.lock", project / "layerforge.lock")
    text = (project / "layerforge.lock").read_text()
    identity = text.split('identity = "', 1)[1].split('"', 1)[0]
    pinned = _entry(world["cache"] / "unpacked" / _hex32(identity))
    store = Store.open(world["store"], create=False)
    result = collect_caches(world["cache"], store, project / "layerforge.toml", None)
    assert pinned.is_dir() and not world["dead_image"].exists()
    assert world["dead_chain"].is_dir()  # without the store's gc, its old key still reaches it
    assert result.skipped is None


def test_skipped_while_a_build_holds_the_cache(world: dict[str, Path]) -> None:
    before = _present(world)
    with cachedir.using(world["cache"], world["store"], None):
        result = _run(world)
    assert result.skipped is not None and "build" in result.skipped
    assert result.removed == () and _present(world) == before
    assert _run(world).skipped is None  # released


def test_an_unreadable_known_store_stops_the_cache_gc(
    world: dict[str, Path], tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (broken / "index.json").write_text("not json")
    cachedir.register(world["cache"], broken, None)
    result = _run(world)
    assert result.skipped is not None and str(broken) in result.skipped
    assert world["dead_chain"].is_dir()


def test_hardlinked_files_count_once_and_only_when_every_link_goes(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store")
    cache = tmp_path / "cache"
    keep = tmp_path / "elsewhere"
    keep.write_bytes(b"K" * 40000)
    one = _entry(cache / "roots" / ("b" * 32), b"S" * 40000)
    two = cache / "roots" / ("c" * 32)
    (two / "rootfs").mkdir(parents=True)
    os.link(one / "rootfs" / "file", two / "rootfs" / "file")  # cp -al between chains
    os.link(keep, two / "rootfs" / "kept")  # a link that survives (like a store blob)
    _age(two)
    result = collect_caches(cache, store)
    sizes = {e.path: e.size for e in result.removed}
    assert not one.exists() and not two.exists()
    assert sizes[one] >= 40000 and sizes[two] < 40000  # the shared file counted once
    assert keep.read_bytes() == b"K" * 40000


def test_registration_and_lock_file(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cachedir.register(cache, tmp_path / "s", tmp_path / "m.toml")
    record = next((cache / cachedir.STORES).glob("*.json"))
    before = record.stat().st_mtime_ns
    cachedir.register(cache, tmp_path / "s", tmp_path / "m.toml")  # unchanged: not rewritten
    assert record.stat().st_mtime_ns == before
    assert json.loads(record.read_text())["store"] == str(tmp_path / "s")
    with cachedir.exclusive(cache) as got:
        assert got
        with cachedir.exclusive(cache) as second:
            assert not second


def test_remove_entry_renames_then_deletes(tmp_path: Path) -> None:
    entry = _entry(tmp_path / "rootfs" / ("a" * 32))
    (entry / "rootfs" / "ro").mkdir(mode=0o500)
    remove_entry(entry)
    assert list(tmp_path.joinpath("rootfs").iterdir()) == []
    lone = tmp_path / "f.blob"
    lone.write_bytes(b"1")
    remove_entry(lone)
    assert not lone.exists()


def test_fresh_entries_are_never_removed(world: dict[str, Path]) -> None:
    store = Store.open(world["store"], create=False)
    later = time.time() + 7200  # two hours from now, every entry is old
    result = collect_caches(world["cache"], store, None, None, now=later, dry_run=True)
    assert world["fresh_dead"] in {e.path for e in result.removed}
    assert world["busy_stage"] in {e.path for e in result.removed}


def test_operations_that_fill_the_cache_register_and_hold_it(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "p" / "layerforge.toml", tmp_path / "p" / ".layerforge", tmp_path)
    seen: list[bool] = []

    @cachedir.uses_cache
    def work(project: object, ws: Workspace) -> int:
        with cachedir.exclusive(ws.cache_dir) as got:
            seen.append(got)
        return 7

    assert work(None, ws=ws) == 7
    assert seen == [False]  # gc could not have cleaned the cache meanwhile
    (known,) = cachedir.known_stores(tmp_path)
    assert (known.store, known.manifest) == (ws.store, ws.manifest)
    with cachedir.exclusive(tmp_path) as got:
        assert got  # released


def test_manifest_validation_entries_of_a_known_project_stay(tmp_path: Path) -> None:
    from layerforge.manifest import cache_entry, load

    project = tmp_path / "fleet"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns(".layerforge"))
    manifest = project / "layerforge.toml"
    cache = tmp_path / "cache"
    load(manifest, cache)
    current = cache_entry(cache, manifest)
    assert current is not None and current.is_file()
    stale = current.with_name("0" * 64 + ".json")  # an earlier text of the manifest
    stale.write_text("{}")
    fresh = current.with_name("1" * 64 + ".json")  # within the grace period: kept
    fresh.write_text("{}")
    _age(current), _age(stale)
    store = Store.open(tmp_path / "store")
    result = collect_caches(cache, store, manifest, storegc.collect(store, keep=1, dry_run=False))
    assert [e.path for e in result.removed] == [stale]
    assert current.is_file() and fresh.is_file() and not stale.exists()


def test_entries_are_told_apart_by_their_area_not_by_the_length_of_a_name(
    tmp_path: Path,
) -> None:
    """Chains and tarballs live in areas of their own (cachedir.AREAS): a directory whose
    name merely has the other kind's length is not ours and is never judged."""
    from layerforge.gc.cachegc import candidates

    cache = tmp_path / "cache"
    for relative in ("roots/" + "a" * 32, "roots/" + "b" * 24, "tarballs/" + "e" * 24,
                     "tarballs/" + "f" * 32):  # fmt: skip
        (cache / relative).mkdir(parents=True)
    found = {(e.path.relative_to(cache).as_posix(), e.kind) for e in candidates(cache)}
    assert found == {("roots/" + "a" * 32, "chain"), ("tarballs/" + "e" * 24, "tarball")}


def test_every_cache_area_has_its_own_directory() -> None:
    from layerforge import cachedir

    names = [a.name for a in cachedir.AREAS]
    assert len(names) == len(set(names))
    assert cachedir.TARBALLS.kind_of("e" * 24) == "tarball"
    assert cachedir.CHAINS.kind_of("e" * 24) is None
    assert cachedir.STAGE.kind_of("anything") == "temporary"
    assert cachedir.REGISTRATIONS.kind_of("0123.json") is None
