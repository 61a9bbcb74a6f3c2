"""The per-distribution layer cache: what is reused, what is refused, and the layer order."""

from __future__ import annotations

import posixpath
from pathlib import Path

from layerforge.builder import distcache
from layerforge.builder.python import DistFiles, group, rest_group, split
from layerforge.lock.lockfile import Package
from layerforge.oci import media
from layerforge.oci.layer import Layer
from layerforge.oci.layout import Descriptor, Store
from layerforge.oci.tarball import Entry

SITE = "opt/venv/lib/python3.11/site-packages"


def dist(name: str, size: int, *files: str, digest: str = "sha256=same") -> DistFiles:
    """A distribution whose RECORD gives each of its files the hash ``digest``."""
    paths = files or (f"{SITE}/{name}/__init__.py",)
    entries = [Entry(p, "file", 0o644, 1, data=b"x") for p in paths]
    record = f"{name}-1.0.dist-info/RECORD"
    rows = [f"{posixpath.relpath(p, SITE)},{digest},1\n" for p in paths] + [f"{record},,\n"]
    data = "".join(rows).encode()
    entries.append(Entry(f"{SITE}/{record}", "file", 0o644, len(data), data=data))
    return DistFiles(name, "1.0", tuple(entries), size)


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
    assert hit.files == {
        f"{SITE}/torch/__init__.py": "sha256=same",
        "opt/venv/bin/torchrun": "sha256=same",  # ../../../bin/torchrun in the RECORD
        f"{SITE}/torch-1.0.dist-info/RECORD": "",
    }
    assert distcache.load(store, "other") is None
    store.blob_path(layer.descriptor.digest).unlink()  # e.g. removed by gc
    assert distcache.load(store, "k1") is None


def test_damaged_record_is_a_miss(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store")
    path = store.root / "layerforge" / "dists" / "k.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"name": "torch"}')
    assert distcache.load(store, "k") is None


def cached(store: Store, fresh: DistFiles) -> distcache.CachedDist:
    layer = stored_layer(store, fresh.name.encode())
    files = distcache.file_hashes(fresh)
    return distcache.CachedDist(fresh.name, "1.0", fresh.installed_size, layer, files)


def test_only_distributions_above_the_threshold_now_are_served(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store")
    known = {"torch": cached(store, dist("torch", 700)), "sympy": cached(store, dist("sympy", 150))}
    packages = [package("torch"), package("sympy"), package("six")]
    served = distcache.servable(packages, lambda p: known.get(p.name), threshold=200)
    assert set(served) == {"torch"}
    served = distcache.servable(packages, lambda p: known.get(p.name), threshold=100)
    assert set(served) == {"torch", "sympy"}
    assert distcache.servable(packages, lambda p: known.get(p.name), threshold=1000) == {}


def test_a_path_shared_with_other_content_collides(tmp_path: Path) -> None:
    """NVIDIA wheels all ship an empty nvidia/__init__.py: the same hash, no conflict. A
    shared path whose content differs (or is unknown) depends on the install order."""
    store = Store.open(tmp_path / "store")
    ns = f"{SITE}/nvidia/__init__.py"
    cublas = cached(store, dist("nvidia_cublas", 9, ns, f"{SITE}/nvidia/cublas.so"))
    cudnn = cached(store, dist("nvidia_cudnn", 9, ns, f"{SITE}/nvidia/cudnn.so"))
    nccl = dist("nvidia_nccl", 9, ns, f"{SITE}/nvidia/nccl.so")
    assert not distcache.collides([nccl], [cublas, cudnn])
    other = dist("other", 9, ns, digest="sha256=different")
    assert distcache.collides([other], [cublas])
    assert distcache.collides([dist("unknown", 9, ns, digest="")], [cublas])
    odd = cached(store, other)
    assert distcache.collides([], [cublas, odd])
    assert not distcache.collides([other, dist("x", 9, ns, digest="")], [])  # none reused
    assert distcache.reusable([nccl, dist("six", 1)]) == {"nvidia_nccl", "six"}
    assert distcache.reusable([nccl, other, dist("six", 1)]) == {"six"}


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
    from layerforge.builder.context import BuildContext
    from layerforge.builder.deps import dist_cache_key, wheel_bytes_to_install
    from layerforge.events import NullReporter
    from layerforge.lock import lockfile
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
