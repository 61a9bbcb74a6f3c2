"""Report computations: listings, waste, fleet figures, budgets, disk estimate, gc, timings."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from layerforge.builder import budgets, disk
from layerforge.errors import BudgetError
from layerforge.events import Event, ListReporter
from layerforge.gc import storegc
from layerforge.oci import media
from layerforge.oci.layout import Descriptor, Store, canonical_json
from layerforge.oci.tarball import Entry
from layerforge.oci.write import write_layer_to_store
from layerforge.records import records_dir
from layerforge.report.fleet import FleetReport, union_size
from layerforge.report.html import render
from layerforge.report.listing import FileEntry, listing, read_listing
from layerforge.report.sizes import Held, ImageReport, LayerReport, holds, layer_kind
from layerforge.report.timings import TimingReporter
from layerforge.report.waste import Waste, waste

# -- listings -----------------------------------------------------------------------------------


def _dist_entries() -> list[Entry]:
    record = (
        b"pkg/__init__.py,sha256=x,5\npkg/big.so,sha256=y,1000\n"
        b"pkg-1.0.dist-info/RECORD,,\n../../../bin/pkg-cli,sha256=z,7\n"
    )
    site = "opt/venv/lib/python3.11/site-packages"
    return [
        Entry(f"{site}/pkg/__init__.py", "file", 0o644, 5, data=b"x = 1"),
        Entry(f"{site}/pkg/big.so", "file", 0o644, 1000, data=b"\0" * 1000),
        Entry(f"{site}/pkg-1.0.dist-info/RECORD", "file", 0o644, len(record), data=record),
        Entry("opt/venv/bin/pkg-cli", "file", 0o755, 7, data=b"#!/x\nhi"),
        Entry(f"{site}/stray.txt", "file", 0o644, 3, data=b"abc"),
    ]


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_listing_attributes_files_to_their_distribution(tmp_path: Path, compression: str) -> None:
    store = Store.open(tmp_path / "store")
    blob = write_layer_to_store(store, _dist_entries(), compression=compression)  # type: ignore[arg-type]
    result = listing(store, blob.digest)
    (dist,) = result.dists
    assert (dist.name, dist.version, dist.files) == ("pkg", "1.0", 4)
    assert dist.size == 5 + 1000 + len(_dist_entries()[2].data or b"") + 7
    files = {e.path: e for e in result.entries if e.kind == "file"}
    assert files["opt/venv/bin/pkg-cli"].size == 7
    assert {e.kind for e in result.entries} == {"file", "dir"}
    # cached: the second read comes from the listing file, and agrees
    cache = store.root / "layerforge" / "listings" / f"{blob.digest.split(':')[1]}.json"
    assert cache.is_file()
    assert listing(store, blob.digest) == result


def test_listing_of_a_damaged_blob_is_a_store_error(tmp_path: Path) -> None:
    from layerforge.errors import StoreError

    bad = tmp_path / "blob"
    bad.write_bytes(b"\x1f\x8b" + b"not gzip at all" * 10)
    with pytest.raises(StoreError, match="cannot be read as a tar"):
        read_listing(bad, "sha256:" + "0" * 64)


def test_holds_ranks_distributions_files_or_directories() -> None:
    from layerforge.report.listing import DistUsage, Listing

    entries = (
        FileEntry("usr/lib/a.so", "file", 50),
        FileEntry("usr/share/doc", "file", 10),
        FileEntry("etc/x", "file", 1),
    )
    dists = (DistUsage("numpy", "2.0", 40, 3), DistUsage("six", "1", 2, 1))
    lst = Listing("sha256:" + "1" * 64, entries, dists)
    assert holds("deps", lst)[0] == Held("numpy 2.0", 40)
    assert holds("app", lst)[0] == Held("usr/lib/a.so", 50)
    assert [h.label for h in holds("os", lst)] == ["usr/lib/", "usr/share/", "etc/"]
    assert layer_kind("layerforge: pip numpy 2.0") == "deps"
    assert layer_kind("layerforge: COPY /app") == "app"
    assert layer_kind("/bin/sh -c apt-get install") == "other"
    assert layer_kind("layerforge: system (libgomp1, run steps)") == "system"


# -- waste --------------------------------------------------------------------------------------


def f(path: str, size: int = 0, kind: str = "file") -> FileEntry:
    return FileEntry(path, kind, size)


def test_waste_counts_shadowed_and_deleted_bytes() -> None:
    lower = [f("etc", kind="dir"), f("etc/big.conf", 100), f("var/cache/apt", kind="dir"),
             f("var/cache/apt/a.deb", 400), f("var/cache/apt/b.deb", 600), f("keep", 9),
             f("tmp/x", 30), f("opt", kind="dir"), f("opt/old", 70)]  # fmt: skip
    upper = [f("etc", kind="dir"), f("etc/big.conf", 120), f("var/cache/.wh.apt"),
             f("tmp/.wh.x"), f("opt/.wh..wh..opq"), f("opt/new", 5)]  # fmt: skip
    result = waste([lower, upper])
    hidden = {(i.path, i.size, i.how, i.lower, i.upper) for i in result.items}
    assert hidden == {
        ("etc/big.conf", 100, "shadowed", 0, 1),
        ("var/cache/apt/a.deb", 400, "deleted", 0, 1),
        ("var/cache/apt/b.deb", 600, "deleted", 0, 1),
        ("tmp/x", 30, "deleted", 0, 1),
        ("opt/old", 70, "deleted", 0, 1),
    }
    assert result.total == 1200
    assert result.items[0].path == "var/cache/apt/b.deb"  # largest first


def test_waste_is_zero_for_disjoint_layers_and_same_layer_files() -> None:
    assert waste([[f("a", 1)], [f("b", 2)], [f("a2", 3), f("c/.wh.nothing")]]).total == 0
    # a directory replaced by a file hides what was under it
    result = waste([[f("d", kind="dir"), f("d/x", 8)], [f("d", 1)]])
    assert [(i.path, i.size) for i in result.items] == [("d/x", 8)]


def test_waste_of_deep_subtrees_siblings_with_a_common_prefix_and_a_root_opaque() -> None:
    lower = [f("a/b/c/d/e", 1), f("a/b/c2", 2), f("a/bb/x", 4), f("z", 8)]  # no dir entries
    result = waste([lower, [f("a/.wh.b")], [f(".wh..wh..opq"), f("new", 16)]])
    hidden = {(i.path, i.upper) for i in result.items}
    assert hidden == {("a/b/c/d/e", 1), ("a/b/c2", 1), ("a/bb/x", 2), ("z", 2)}


# -- fleet figures ------------------------------------------------------------------------------


def _layer(digest: str, size: int, owner: str, inherited: bool, kind: str = "deps") -> LayerReport:
    return LayerReport(digest, size, size * 3, "x", kind, owner, inherited, (), 1)


def _image(node: str, kind: str, parent: str | None, layers: list[LayerReport]) -> ImageReport:
    return ImageReport(node, kind, parent, "sha256:k", f"m-{node}", 10, f"c-{node}", 20,
                       tuple(layers), None, Waste(()))  # fmt: skip


def _fleet() -> list[ImageReport]:
    os_layer = _layer("os", 1000, "cpu", False, "os")
    deps = _layer("deps", 500, "cpu", False)
    cpu = _image("cpu", "base", None, [os_layer, deps])
    inherited = [_layer("os", 1000, "cpu", True, "os"), _layer("deps", 500, "cpu", True)]
    api = _image("api", "service", "cpu", [*inherited, _layer("app1", 5, "api", False, "app")])
    web = _image("web", "service", "cpu", [*inherited, _layer("app2", 7, "web", False, "app")])
    return [cpu, api, web]


def test_union_counts_shared_blobs_once() -> None:
    cpu, api, web = _fleet()
    assert api.size == 10 + 20 + 1505 and api.inherited == 1500 and api.own == 5
    assert union_size([api, web]) == 1500 + 5 + 7 + 2 * (10 + 20)
    assert union_size([cpu, api, web]) == 1500 + 12 + 3 * 30


def test_fleet_report_saving_and_breaches() -> None:
    cpu, api, web = _fleet()
    big = ImageReport(**{**cpu.__dict__, "max_size": 100})
    report = FleetReport("p", (big, api, web), ("api", "web"), union_size([big, api, web]),
                         {"api": api.size, "web": web.size}, union_size([api, web]),
                         {"api": 2000, "web": 2000}, ())  # fmt: skip
    assert report.naive_all == 4000
    assert report.saving_pulled == 4000 - report.pull_all
    assert [(b.node, b.size, b.limit) for b in report.breaches] == [("cpu", 4500, 100)]
    doc = report.to_json()
    assert doc["fleet"]["saving"]["pulled"] == report.saving_pulled
    assert doc["budgets"] == [{"node": "cpu", "size": 4500, "max_size": 100, "over": True}]
    page = render(report)
    assert "://" not in page  # nothing to fetch
    for name in ("cpu", "api", "web"):
        assert f">{name}<" in page
    assert "Over budget" in page


def test_budget_error_lists_every_breach() -> None:
    breaches = [budgets.Breach("cpu", 2_000_000, 1_000_000), budgets.Breach("gpu", 9, 5)]
    err = budgets.error(breaches, building=True)
    assert isinstance(err, BudgetError) and err.exit_code == 1
    assert "cpu: 2 MB uncompressed, over its max_size of 1 MB" in str(err)
    assert "gpu" in str(err) and "--allow-oversize" in str(err)
    assert err.breaches == (("cpu", 2_000_000, 1_000_000), ("gpu", 9, 5))


# -- disk ---------------------------------------------------------------------------------------


def test_disk_needs_add_up_on_one_filesystem(tmp_path: Path) -> None:
    result = disk.needs(tmp_path / "store", 100, tmp_path / "cache" / "deep", 50)
    assert len(result) == 1
    (need,) = result
    assert need.needed == 150 and need.free > 0 and need.fits
    assert not disk.Need(tmp_path, 10, 5).fits


def test_disk_estimate_of_the_example_fleet(tmp_path: Path) -> None:
    """Relations that hold whatever the factors are (their values are checked against a real
    cold build in tests/integration/test_disk_estimate.py): a layer or a staging is larger
    than the wheels it comes from, a debootstrap root not cached yet costs space, and one
    more job stages one more node at once."""
    from layerforge.builder.context import BuildContext
    from layerforge.events import NullReporter
    from layerforge.lock import lockfile
    from layerforge.manifest import load
    from layerforge.plan import make_plan, scan_sources
    from layerforge.sources.debootstrap import debootstrap_key, locked_debootstrap_key
    from tests.conftest import EXAMPLE

    project = load(EXAMPLE / "layerforge.toml")
    lock = lockfile.read(EXAMPLE / "layerforge.lock")
    trees = scan_sources(project)
    store = Store.open(tmp_path / "store")
    cold, warm = tmp_path / "cold", tmp_path / "warm"
    source = project.nodes["cpu"].os_source
    assert source is not None
    pin = lock.nodes["cpu"].source
    rows = pin.os if pin is not None else ()  # lock v2: a root made from the locked .debs
    key = locked_debootstrap_key(source, rows) if rows else debootstrap_key(source)
    (warm / "debootstrap" / key / "rootfs").mkdir(parents=True)

    def estimate(cache: Path, jobs: int, *nodes: str) -> tuple[int, int]:
        plan = make_plan(project, lock, trees, {}, {}, selected=list(nodes) or None)
        ctx = BuildContext(project, lock, store, cache, NullReporter(), trees, jobs=jobs)
        return disk.estimate(plan, ctx)

    wheels = {n: sum(p.size for p in lock.nodes[n].packages) for n in project.nodes}
    assert estimate(warm, 1, "ml")[0] > wheels["ml"]  # no OS layers, no source tree
    assert estimate(warm, 1, "ml")[1] > wheels["ml"]
    assert estimate(cold, 2)[1] > estimate(warm, 2)[1]  # the debootstrap root
    largest = sorted(wheels.values(), reverse=True)
    one, two, every = (estimate(warm, jobs)[1] for jobs in (1, 2, len(wheels)))
    assert largest[0] < one < two < every
    assert two - one > largest[1]
    assert every == sum(estimate(warm, 1, n)[1] for n in wheels)  # all at once


# -- gc -----------------------------------------------------------------------------------------


def _fake_image(store: Store, node: str, payload: bytes, hex12: str, age: float) -> set[str]:
    layer = store.put_bytes(payload)
    config = store.put_bytes(canonical_json({"rootfs": {"diff_ids": []}, "n": node}))
    manifest = canonical_json({
        "schemaVersion": 2, "mediaType": media.OCI_MANIFEST,
        "config": {"mediaType": media.OCI_CONFIG, "digest": config, "size": 1},
        "layers": [{"mediaType": media.OCI_LAYER_GZIP, "digest": layer, "size": len(payload)}],
    })  # fmt: skip
    digest = store.put_bytes(manifest)
    store.tag(f"{node}:lf-{hex12}", Descriptor(media.OCI_MANIFEST, digest, len(manifest)))
    record = records_dir(store.root) / f"{hex12}.json"
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text("{}")
    os.utime(record, (age, age))
    return {layer, config, digest}


def test_gc_keeps_the_newest_keys_and_what_latest_reaches(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store")
    old = _fake_image(store, "api", b"old layer", "a" * 12, 1000)
    mid = _fake_image(store, "api", b"mid layer", "b" * 12, 2000)
    new = _fake_image(store, "api", b"new layer", "c" * 12, 3000)
    store.tag("api:latest", store.tags()[f"api:lf-{'a' * 12}"])  # latest points at the oldest
    orphan = store.put_bytes(b"nobody points here")
    layers_cache = store.root / "layerforge" / "layers" / "k.json"
    layers_cache.parent.mkdir(parents=True)
    layers_cache.write_text(json.dumps([{"descriptor": {"digest": orphan}}]))
    dists = store.root / "layerforge" / "dists"
    dists.mkdir(parents=True)
    (dists / "gone.json").write_text(json.dumps({"layer": {"descriptor": {"digest": orphan}}}))
    (dists / "kept.json").write_text(json.dumps({"layer": {"descriptor": {"digest": min(new)}}}))

    dry = storegc.collect(store, keep=2, dry_run=True)
    assert dry.untagged == (f"api:lf-{'b' * 12}",) and orphan in {d for d, _ in dry.removed}
    assert store.has_blob(orphan) and layers_cache.exists()

    result = storegc.collect(store, keep=2)
    removed = {d for d, _ in result.removed}
    shared_config = old & mid & new
    assert removed == (mid - shared_config) | {orphan}
    assert result.freed == sum(s for _, s in result.removed)
    assert set(store.tags()) == {"api:latest", f"api:lf-{'a' * 12}", f"api:lf-{'c' * 12}"}
    assert all(store.has_blob(d) for d in old | new)
    assert not (records_dir(store.root) / f"{'b' * 12}.json").exists()
    assert not layers_cache.exists()
    assert sorted(p.name for p in dists.iterdir()) == ["kept.json"]  # distribution cache too
    assert storegc.collect(store, keep=2).removed == ()  # nothing left to do
    # keep=1: only the key latest points at survives, even though it is the oldest
    assert storegc.collect(store, keep=1).untagged == (f"api:lf-{'c' * 12}",)
    assert set(store.tags()) == {"api:latest", f"api:lf-{'a' * 12}"}


# -- timings ------------------------------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_timings_per_node_and_step() -> None:
    clock = _Clock()
    inner = ListReporter()
    rep = TimingReporter(inner, clock)

    def at(t: float, kind: str, task: str) -> None:
        clock.now = t
        rep.emit(Event(kind, task))  # type: ignore[arg-type]

    at(0, "start", "build:cpu")
    at(1, "start", "source:debootstrap bookworm")  # names no node: cpu's thread
    at(3, "finish", "source:debootstrap bookworm")
    at(3, "start", "install:cpu")
    at(4, "finish", "install:cpu")
    at(4, "start", "layer:cpu:numpy 2.0")
    at(6, "finish", "layer:cpu:numpy 2.0")
    at(7, "finish", "build:cpu")
    rep.emit(Event("info", "build:api", "cached"))
    clock.now = 8
    t = rep.timings()
    assert t.nodes == {"cpu": 7, "api": 0}
    assert t.node_steps("cpu") == {"os layer": 2, "install": 1, "compress": 2}
    assert t.total == 8
    assert t.to_json()["steps"] == {"os layer": 2, "install": 1, "compress": 2}
    assert len(inner.events) == 9  # every event passed on


def test_timings_attribute_unnamed_tasks_to_the_thread_node() -> None:
    rep = TimingReporter(ListReporter())

    def work(node: str) -> None:
        rep.emit(Event("start", f"build:{node}"))
        rep.emit(Event("start", f"source:{node}-os"))
        rep.emit(Event("finish", f"source:{node}-os"))
        rep.emit(Event("finish", f"build:{node}"))

    threads = [threading.Thread(target=work, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    owners = {s.label: s.node for s in rep.timings().steps}
    assert owners == {"source:a-os": "a", "source:b-os": "b"}


def test_disk_estimate_skips_dependency_layers_the_cache_holds(tmp_path: Path) -> None:
    from layerforge.builder.context import BuildContext
    from layerforge.builder.deps import deps_cache_key
    from layerforge.events import NullReporter
    from layerforge.lock import lockfile
    from layerforge.manifest import load
    from layerforge.oci.layer import Layer
    from layerforge.plan import make_plan, scan_sources
    from tests.conftest import EXAMPLE

    project = load(EXAMPLE / "layerforge.toml")
    lock = lockfile.read(EXAMPLE / "layerforge.lock")
    trees = scan_sources(project)
    plan = make_plan(project, lock, trees, {}, {})
    store = Store.open(tmp_path / "store")
    ctx = BuildContext(project, lock, store, tmp_path, NullReporter(), trees)
    before, _ = disk.estimate(plan, ctx)
    blob = store.put_bytes(b"a dependency layer")
    layer = Layer(Descriptor(media.OCI_LAYER_GZIP, blob, 18), blob, "layerforge: pip x")
    key = deps_cache_key(ctx, lock.nodes["ml"].packages, project.python)
    cached = store.root / "layerforge" / "layers" / f"{key}.json"
    cached.parent.mkdir(parents=True)
    cached.write_text(json.dumps([layer.to_json()]))
    after, _ = disk.estimate(plan, ctx)
    ml_wheels = sum(p.size for p in lock.nodes["ml"].packages)
    assert before - after == int(ml_wheels * disk.LAYER_FACTOR)


def test_owners_match_layers_by_digest_along_the_chain() -> None:
    from layerforge.manifest import load
    from layerforge.oci.layer import Layer
    from layerforge.records import ImageRecord, PythonInfo
    from layerforge.report.sizes import layer_owners
    from tests.conftest import EXAMPLE

    project = load(EXAMPLE / "layerforge.toml")

    def rec(node: str, *digits: str) -> ImageRecord:
        layers = tuple(
            Layer(Descriptor(media.OCI_LAYER_GZIP, "sha256:" + d * 64, 1), "x", "x") for d in digits
        )
        desc = Descriptor(media.OCI_MANIFEST, "sha256:" + "f" * 64, 1)
        return ImageRecord(node, "k", desc, {}, layers, PythonInfo("/usr/bin/python3", "3.11"))

    records = {"cpu": rec("cpu", "1", "2"), "ml": rec("ml", "1", "2", "3"),
               "batch": rec("batch", "1", "2", "3", "4", "5")}  # fmt: skip
    assert layer_owners(project, records, "batch") == ["cpu", "cpu", "ml", "batch", "batch"]
    # ml was rebuilt since batch was built: batch's third layer is no longer ml's
    records["ml"] = rec("ml", "1", "2", "9")
    assert layer_owners(project, records, "batch") == ["cpu", "cpu", "batch", "batch", "batch"]
    del records["cpu"]
    assert layer_owners(project, records, "batch")[:2] == ["ml", "ml"]


def test_waste_from_real_layers_in_a_store(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store")
    lower = write_layer_to_store(store, [
        Entry("etc/app.conf", "file", 0o644, 300, data=b"a" * 300),
        Entry("var/cache/pkgs/big.deb", "file", 0o644, 5000, data=b"b" * 5000),
    ])  # fmt: skip
    upper = write_layer_to_store(store, [
        Entry("etc/app.conf", "file", 0o644, 10, data=b"c" * 10),
        Entry("var/cache/.wh.pkgs", "file", 0o644, 0, data=b""),
    ])  # fmt: skip
    result = waste([listing(store, lower.digest).entries, listing(store, upper.digest).entries])
    assert [(i.path, i.size, i.how) for i in result.items] == [
        ("var/cache/pkgs/big.deb", 5000, "deleted"),
        ("etc/app.conf", 300, "shadowed"),
    ]


def test_waste_shared_by_descendants_is_printed_once() -> None:
    from types import SimpleNamespace

    from rich.console import Console

    from layerforge.cli.report import print_waste

    item = SimpleNamespace(path="usr/share/doc/x.gz", size=2048, how="deleted", upper=2)
    shared = SimpleNamespace(items=[item])
    layers = [SimpleNamespace(owner="cpu", kind=kind) for kind in ("os", "venv", "system")]
    images = [
        SimpleNamespace(node="cpu", waste=shared, layers=layers),
        SimpleNamespace(node="api", waste=shared, layers=layers),
        SimpleNamespace(node="clean", waste=SimpleNamespace(items=[]), layers=layers),
    ]
    console = Console(record=True, width=200)
    print_waste(console, SimpleNamespace(images=images))
    text = console.export_text()
    assert text.count("usr/share/doc/x.gz") == 1
    assert "waste in cpu, api (largest files):" in text and "clean" not in text
    assert "usr/share/doc/x.gz (2.05 kB, deleted by cpu's system layer)" in text
