"""Issue 13 item 1: the unpacked trees (``layers/``, ``roots/``) stay under a cap, least
recently used first, and the areas of earlier versions (``rootfs/``, ``app/``) are reclaimed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from layerforge import api, cachedir
from layerforge.errors import ManifestError, UsageError
from layerforge.gc.cachegc import collect_caches, evict
from layerforge.manifest import load
from layerforge.oci.layout import Store
from layerforge.oci.unpack import USED, chain_id, unpack_chain
from tests.unit.test_cachegc import _image
from tests.unit.test_unpack import TAR, dir_, file, layer


def _areas_bytes(cache: Path) -> int:
    """Disk used by the unpacked areas (each inode once)."""
    seen: set[int] = set()
    total = 0
    for area in cachedir.UNPACKED:
        for top, dirs, files in os.walk(area.path(cache)):
            for name in (*dirs, *files):
                st = os.lstat(os.path.join(top, name))
                if st.st_ino not in seen:
                    seen.add(st.st_ino)
                    total += st.st_blocks * 512
    return total


def _used(entry: Path, when: float) -> None:
    os.utime(entry / USED, (when, when))


def test_eviction_brings_the_areas_back_to_the_cap(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store")
    cache = tmp_path / "cache"
    trees, roots = cachedir.LAYER_TREES.path(cache), cachedir.ROOTS.path(cache)
    digests = []
    for i in range(4):  # four layers of 256 KiB each, and a farm over each pair of them
        blob = layer(tmp_path / f"{i}.tar", dir_(f"d{i}"), file(f"d{i}/f", os.urandom(1 << 18)))
        digests.append(store.put_bytes(blob.read_bytes()))
    chains = [[digests[0], digests[1]], [digests[2], digests[3]]]
    for chain in chains:
        unpack_chain(store, [(d, TAR) for d in chain], trees, roots)
    for i, d in enumerate(digests):
        _used(trees / d.split(":")[1][:32], 1000 + i)  # layer 0 used longest ago
    _used(roots / chain_id(chains[0]), 2000)
    _used(roots / chain_id(chains[1]), 3000)
    before = _areas_bytes(cache)
    assert before > 4 << 18
    cap = before - (1 << 18)  # one layer too many
    gone = evict(cache, cap)
    assert _areas_bytes(cache) <= cap
    # layer 0 goes first, with the farm that links it; the rest stays
    assert {e.path for e in gone} == {
        trees / digests[0].split(":")[1][:32],
        roots / chain_id(chains[0]),
    }
    assert (roots / chain_id(chains[1]) / "rootfs/d3/f").is_file()
    assert evict(cache, cap) == []  # under the cap: nothing more
    evict(cache, 0)
    assert _areas_bytes(cache) == 0


def test_gc_applies_the_cap_and_reclaims_legacy_areas(tmp_path: Path) -> None:
    """Entries a tagged image reaches are still evicted beyond the cap (they are rebuilt from
    the store in a moment); ``rootfs/`` and ``app/`` of earlier versions always go."""
    store = Store.open(tmp_path / "store")
    cache = tmp_path / "cache"
    blob = layer(tmp_path / "l.tar", dir_("d"), file("d/f", os.urandom(1 << 18)))
    (digest,) = _image(store, "api", [blob.read_bytes()], "a" * 12, 1000)
    root = unpack_chain(
        store, [(digest, TAR)], cachedir.LAYER_TREES.path(cache), cachedir.ROOTS.path(cache)
    )
    legacy = [cachedir.CHAINS.path(cache, chain_id([digest])), cachedir.APPS.path(cache, "a" * 32)]
    for path in legacy:
        (path / "rootfs").mkdir(parents=True)
        (path / "rootfs" / "f").write_bytes(b"old" * 1000)
    assert store.tags()  # the farm and its tree are reached by a tag: gc keeps them ...
    kept = collect_caches(cache, store)  # (the default cap is far above 256 KiB)
    assert {e.path for e in kept.removed} == set(legacy)
    assert root.is_dir()  # ... unless the cap says otherwise
    result = collect_caches(cache, store, cap=0)
    assert {e.area for e in result.removed} == {"layers", "roots"}
    assert _areas_bytes(cache) == 0


def test_cache_max_in_the_manifest_and_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = tmp_path / "layerforge.toml"
    body = '\n[bases.os]\nfrom = "rootfs:os"\n'
    (tmp_path / "os").mkdir()
    manifest.write_text('[project]\nname = "x"\ncache_max = "20GB"\n' + body)
    assert load(manifest).cache_max == 20_000_000_000
    monkeypatch.delenv("LAYERFORGE_CACHE_MAX", raising=False)
    assert api.cache_max(20) == 20
    monkeypatch.setenv("LAYERFORGE_CACHE_MAX", "1MiB")
    assert api.cache_max(20) == 1 << 20
    monkeypatch.setenv("LAYERFORGE_CACHE_MAX", "lots")
    with pytest.raises(UsageError, match="LAYERFORGE_CACHE_MAX"):
        api.cache_max(None)
    manifest.write_text('[project]\nname = "x"\ncache_max = "big"\n' + body)
    with pytest.raises(ManifestError, match="cache_max"):
        load(manifest)
