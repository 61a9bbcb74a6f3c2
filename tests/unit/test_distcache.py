"""The per-distribution layer cache: what is reused, what is refused, and the layer order."""

from __future__ import annotations

from pathlib import Path

from layerforge.build import distcache
from layerforge.build.layer import Entry
from layerforge.build.python import DistFiles, group, rest_group, split
from layerforge.lockfile import Package
from layerforge.oci import media
from layerforge.oci.layout import Descriptor, Store
from layerforge.ossource import Layer

SITE = "opt/venv/lib/python3.11/site-packages"


def dist(name: str, size: int, *files: str) -> DistFiles:
    paths = files or (f"{SITE}/{name}/__init__.py",)
    entries = tuple(Entry(p, "file", 0o644, 1, data=b"x") for p in paths)
    return DistFiles(name, "1.0", entries, size)


def package(name: str) -> Package:
    wheel = f"{name}-1.0-py3-none-any.whl"
    return Package(name, "1.0", wheel, f"file:///w/{wheel}", "ab" * 32, 10)


def stored_layer(store: Store, payload: bytes) -> Layer:
    digest = store.put_bytes(payload)
    return Layer(Descriptor(media.OCI_LAYER_GZIP, digest, len(payload)), digest, "layerforge: pip")


def test_saved_layer_is_loaded_while_its_blob_exists(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store")
    layer = stored_layer(store, b"torch layer")
    torch = dist("torch", 700, f"{SITE}/torch/__init__.py", "opt/venv/bin/torchrun")
    distcache.save(store, "k1", torch, layer)
    hit = distcache.load(store, "k1")
    assert hit is not None
    assert (hit.name, hit.installed_size, hit.layer) == ("torch", 700, layer)
    assert hit.paths == {f"{SITE}/torch/__init__.py", "opt/venv/bin/torchrun"}
    assert distcache.load(store, "other") is None
    store.blob_path(layer.descriptor.digest).unlink()  # e.g. removed by gc
    assert distcache.load(store, "k1") is None


def test_damaged_record_is_a_miss(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store")
    path = store.root / "layerforge" / "dists" / "k.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"name": "torch"}')
    assert distcache.load(store, "k") is None


def test_only_distributions_above_the_threshold_now_are_served(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store")
    layer = stored_layer(store, b"l")
    known = {
        "torch": distcache.CachedDist("torch", "1.0", 700, layer, frozenset({"a"})),
        "sympy": distcache.CachedDist("sympy", "1.0", 150, layer, frozenset({"b"})),
    }
    packages = [package("torch"), package("sympy"), package("six")]
    served = distcache.servable(packages, lambda p: known.get(p.name), threshold=200)
    assert set(served) == {"torch"}
    served = distcache.servable(packages, lambda p: known.get(p.name), threshold=100)
    assert set(served) == {"torch", "sympy"}
    assert distcache.servable(packages, lambda p: known.get(p.name), threshold=1000) == {}


def test_shared_paths_between_any_two_distributions_collide(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store")
    layer = stored_layer(store, b"l")
    ns = f"{SITE}/nvidia/__init__.py"
    cublas = distcache.CachedDist("nvidia_cublas", "1", 9, layer, frozenset({ns, "x"}))
    cudnn = distcache.CachedDist("nvidia_cudnn", "1", 9, layer, frozenset({ns, "y"}))
    fresh = dist("nvidia_nccl", 9, ns, f"{SITE}/nvidia/nccl.so")
    other = dist("six", 1)
    assert distcache.collides([fresh], [cublas])
    assert distcache.collides([], [cublas, cudnn])
    assert distcache.collides([fresh, dist("nvidia_x", 9, ns)], [])
    assert not distcache.collides([other], [cublas])
    assert distcache.exclusive([fresh, other, dist("nvidia_x", 9, ns)]) == {"six"}


def test_own_layers_are_ordered_by_name_like_a_cold_build() -> None:
    layers = {n: Layer(Descriptor(media.OCI_LAYER_GZIP, n, 1), n, n) for n in "abc"}
    reused = [("torch", layers["a"]), ("nvidia_cublas", layers["b"])]
    fresh = [("triton", layers["c"])]
    assert distcache.ordered([*reused, *fresh]) == [layers["b"], layers["a"], layers["c"]]
    dists = [dist("torch", 700), dist("six", 1), dist("nvidia_cublas", 500), dist("idna", 2)]
    cold = [g.label.split()[0] for g in group(dists, 100)]
    big, rest = split(dists, 100)
    assert cold == [*(d.name for d in big), "2"]  # by name, then "2 packages"
    shared = rest_group(rest)
    assert shared is not None and [d.name for d in shared.dists] == ["six", "idna"]
    assert rest_group([]) is None


def test_lock_names_match_dist_info_names() -> None:
    typing = dist("typing_extensions", 1)
    packages = [package("six"), package("typing-extensions")]
    assert distcache.package_of(typing, packages) == packages[1]
    assert distcache.package_of(dist("idna", 1), packages) is None


def test_disk_preflight_counts_no_wheel_whose_own_layer_is_reused(tmp_path: Path) -> None:
    from layerforge import lockfile
    from layerforge.build.deps import dist_cache_key, wheel_bytes_to_install
    from layerforge.build.executor import BuildContext
    from layerforge.events import NullReporter
    from layerforge.manifest import load
    from tests.conftest import EXAMPLE

    project = load(EXAMPLE / "layerforge.toml")
    lock = lockfile.read(EXAMPLE / "layerforge.lock")
    store = Store.open(tmp_path / "store")
    ctx = BuildContext(project, lock, store, tmp_path, NullReporter(), {})
    packages = lock.nodes["ml"].packages
    total = sum(p.size for p in packages)
    assert wheel_bytes_to_install(ctx, packages, project.python) == total
    scipy = next(p for p in packages if p.name == "scipy")
    key = dist_cache_key(ctx, scipy, project.python)
    big = project.layer_threshold + 1
    distcache.save(store, key, dist("scipy", big), stored_layer(store, b"scipy layer"))
    assert wheel_bytes_to_install(ctx, packages, project.python) == total - scipy.size
    assert wheel_bytes_to_install(ctx, (), project.python) == 0
