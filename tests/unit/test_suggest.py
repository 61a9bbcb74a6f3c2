"""Issue 15 item 2, the pure parts of ``layerforge suggest``: the predictor (own layers
exact, small layers additive), pulls per pool, the Pareto front and the recommendation."""

from __future__ import annotations

import http.server
import json
import math
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

from layerforge import cachedir
from layerforge.errors import ManifestError, UsageError
from layerforge.manifest import load
from layerforge.suggest.candidates import Edit
from layerforge.suggest.edit import edited_text
from layerforge.suggest.imports import closure, command_roots, read_dists, source_imports
from layerforge.suggest.model import (
    Blob,
    Known,
    Score,
    Shape,
    pareto_front,
    predict,
    recommend,
    score,
)
from layerforge.suggest.releases import monthly_rate, rates, release_times
from layerforge.suggest.run import pools_for

MB = 1_000_000


def known() -> Known:
    k = Known(threshold=50 * MB)
    k.fixed = {
        "base": [Blob("sha256:os", 30 * MB)],
        "s1": [Blob("sha256:app1", MB)],
        "s2": [Blob("sha256:app2", MB)],
    }
    k.meta = {"base": 1000, "s1": 1000, "s2": 1000}
    k.add_deps_layer("sha256:big", 40 * MB, [(("big", "1"), 120 * MB)])  # its own layer
    k.add_deps_layer("sha256:small1", 6 * MB, [(("x", "1"), 8 * MB), (("y", "1"), 4 * MB)])
    k.add_deps_layer("sha256:small2", 3 * MB, [(("z", "1"), 3 * MB)])
    return k


def shape(s1: dict[tuple[str, str], int], base: dict[tuple[str, str], int]) -> Shape:
    return Shape(
        parents={"base": None, "s1": "base", "s2": "base"},
        services=("s1", "s2"),
        dists={"base": base, "s1": s1, "s2": {("z", "1"): MB}},
    )


def test_predictor_exact_for_own_layers_and_additive_for_small() -> None:
    k = known()
    today = predict(k, shape({("x", "1"): MB, ("y", "1"): MB, ("big", "1"): 9 * MB}, {}))
    s1 = {b.ident: b.size for b in today.layers["s1"]}
    assert s1["sha256:big"] == 40 * MB  # exact: the own layer's blob
    assert s1["sha256:small1"] == 6 * MB  # the same members: the very layer built
    # x moved to the base: each side is its share (4 MB of x, 2 MB of y), not a wheel guess
    moved = predict(k, shape({("y", "1"): MB}, {("x", "1"): MB}))
    assert [b.size for b in moved.layers["base"]] == [30 * MB, 4 * MB]
    assert [b.size for b in moved.layers["s1"]] == [MB, 2 * MB]
    assert not moved.estimated()
    # a distribution never built: wheel * 1.15, and the figure says it is estimated
    new = predict(k, shape({("w", "1"): 2 * MB}, {}))
    assert new.layers["s1"][-1].size == 2_300_000 and new.estimated()


def test_pulled_counts_shared_layers_once_per_pool() -> None:
    k = known()
    sh = shape({("x", "1"): MB}, {})
    together = score(k, sh, {"all": ["s1", "s2"]})
    apart = score(k, sh, {"s1": ["s1"], "s2": ["s2"]})
    assert apart.pulled_total - together.pulled_total == 30 * MB  # the OS layer, once
    assert together.stored == 30 * MB + MB + MB + 4 * MB + 3 * MB + 3000


def test_pareto_front_and_recommendation_ties() -> None:
    scores = {
        "today": Score(100, {"p": 50}, 3, estimated=False),
        "merge": Score(100, {"p": 50}, 2, estimated=False),  # as good, one image fewer
        "worse": Score(120, {"p": 60}, 3, estimated=False),
        "trade": Score(90, {"p": 70}, 3, estimated=False),  # less stored, more pulled
    }
    front = pareto_front(scores)
    assert set(front) == {"merge", "trade"}  # today is dominated by merge (images)
    assert recommend(scores, front, "today") == "merge"  # 150 < 160
    tie = {"today": Score(100, {"p": 50}, 3, False), "same": Score(100, {"p": 50}, 3, False)}
    assert recommend(tie, pareto_front(tie), "today") == "today"


MANIFEST = """\
[project]
name = "demo"  # the fleet

[bases.base]
from = "rootfs:os"
requirements = []

[services.s1]
base = "base"
requirements = ["x", "y"]  # s1's own

[services.s2]
base = "base"
requirements = "s2.txt"
"""


def test_write_edits_inline_requirements_keeps_comments_refuses_files() -> None:
    moved = (
        Edit("base", "requirements", [], ["x"]),
        Edit("s1", "requirements", ["x", "y"], ["y"]),
    )
    text = edited_text(MANIFEST, moved, Path("layerforge.toml"))
    assert 'requirements = ["x"]' in text and 'requirements = ["y"]' in text
    assert "# the fleet" in text and "# s1's own" in text
    reparent = edited_text(MANIFEST, (Edit("s1", "base", "base", "other"),), Path("m"))
    assert 'base = "other"' in reparent
    with pytest.raises(UsageError) as info:
        edited_text(MANIFEST, (Edit("s2", "requirements", ["x"], []),), Path("layerforge.toml"))
    assert "s2.txt" in str(info.value) and "by hand" in str(info.value.hint)


def _layer(path: Path, files: dict[str, str]) -> Path:
    import gzip
    import io
    import tarfile

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(gzip.compress(raw.getvalue()))
    return path


SITE = "opt/venv/lib/python3.11/site-packages"


def test_import_scan_maps_through_record_and_requires_dist(tmp_path: Path) -> None:
    layer = _layer(
        tmp_path / "blob",
        {
            f"{SITE}/scikit_learn-1.5.0.dist-info/RECORD": "sklearn/__init__.py,,\n"
            "scikit_learn-1.5.0.dist-info/RECORD,,\n",
            f"{SITE}/scikit_learn-1.5.0.dist-info/METADATA": "Name: scikit-learn\n"
            "Requires-Dist: scipy>=1.6\nRequires-Dist: pytest; extra == 'tests'\n",
            f"{SITE}/scipy-1.14.0.dist-info/RECORD": "scipy/__init__.py,,\n",
            f"{SITE}/uvicorn-0.30.0.dist-info/RECORD": "uvicorn/main.py,,\n"
            "../../../bin/uvicorn,,\n",
            f"{SITE}/pytest-8.0.dist-info/RECORD": "pytest/__init__.py,,\n_pytest/x.py,,\n",
            f"{SITE}/six-1.16.0.dist-info/RECORD": "six.py,,\n",
        },
    )
    dists = {d.name: d for d in read_dists(layer, "sha256:x")}
    assert dists["scikit-learn"].top_level == {"sklearn"}
    assert dists["scikit-learn"].requires == ("scipy",)  # the extra is left out
    assert dists["six"].top_level == {"six"} and dists["uvicorn"].scripts == {"uvicorn"}
    src = tmp_path / "src"
    (src / "app").mkdir(parents=True)
    (src / "app/__init__.py").write_text("import os, json\nimport sklearn.linear_model\n")
    (src / "app/x.py").write_text("from app import y\nfrom . import z\n")
    imports = source_imports(src)
    assert imports == {"sklearn"}  # stdlib and the source's own package left out
    assert closure(imports, set(), dists) == {"scikit-learn", "scipy"}
    more, exe = command_roots(["uvicorn", "app:app"])
    assert closure(imports | more, exe, dists) == {"scikit-learn", "scipy", "uvicorn"}
    assert command_roots(["python", "-m", "six.moves"]) == ({"six"}, set())


NOW = datetime(2026, 11, 30, tzinfo=UTC)


def page(uploads: dict[str, int]) -> dict[str, object]:
    """A PEP 691 page: version -> days ago it was uploaded (a wheel and an sdist each)."""
    files = []
    for version, days in uploads.items():
        when = (NOW - timedelta(days=days)).isoformat().replace("+00:00", "Z")
        files.append(
            {"filename": f"numpy-{version}-cp311-cp311-linux_x86_64.whl", "upload-time": when}
        )
        files.append({"filename": f"numpy-{version}.tar.gz", "upload-time": when})
    return {"name": "numpy", "files": files}


def test_release_rate_excludes_prereleases_old_ones_and_pins() -> None:
    uploads = {f"2.{i}.0": 20 * i + 1 for i in range(12)}  # 12 finals within the year
    uploads |= {"2.12.0rc1": 3, "2.12.0.dev0": 2, "1.26.4": 400, "3.0.0": 1}
    times = release_times(page(uploads))
    assert monthly_rate(times, SpecifierSet(">=2,<3"), NOW) == 1.0  # 12 a year
    assert monthly_rate(times, None, NOW) == 13 / 12  # 3.0.0 too
    assert monthly_rate(times, SpecifierSet("==2.1.0"), NOW) == 0.0  # a pin never moves


def test_rebuild_bytes_follow_the_release_rate_and_the_pools() -> None:
    k = known()
    sh = shape({("x", "1"): MB, ("y", "1"): MB}, {})
    quiet = score(k, sh, {"all": ["s1", "s2"]}, {})
    busy = score(k, sh, {"all": ["s1", "s2"]}, {"x": 1.0})  # x releases monthly
    assert quiet.rebuild == 0
    expected = (1 - math.exp(-1.0)) * 6 * MB  # s1's small layer (x and y), one pool
    assert abs(busy.rebuild - expected) < 2
    apart = score(k, sh, {"s1": ["s1"], "s2": ["s2"]}, {"x": 1.0})
    assert apart.rebuild == busy.rebuild  # only s1's pool pulls that layer
    assert busy.total == busy.stored + busy.pulled_total + 6 * busy.rebuild


def test_rates_read_pep_691_json_over_http_and_cache_it_a_day(tmp_path: Path) -> None:
    body = json.dumps(page({"2.0.0": 10, "2.1.0": 40})).encode()
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Accept", ""))
            found = self.path == "/simple/numpy/"
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "application/vnd.pypi.simple.v1+json")
            self.end_headers()
            if found:
                self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/simple"
        found = rates(url, [("numpy", None), ("absent", None)], NOW, cache_dir=tmp_path)
    finally:
        server.shutdown()
        server.server_close()
    assert found == {"numpy": 2 / 12, "absent": None}
    assert seen[0] == "application/vnd.pypi.simple.v1+json"
    # the index is gone: the page comes from the cache (what failed is asked again)
    assert rates(url, [("numpy", None)], NOW, cache_dir=tmp_path) == {"numpy": 2 / 12}
    (entry,) = cachedir.RELEASES.path(tmp_path).iterdir()
    assert cachedir.RELEASES.kind_of(entry.name) == "releases"


POOLS = """\
[project]
name = "p"

[bases.base]
from = "rootfs:os"

[services.api]
base = "base"

[services.web]
base = "base"

[services.train]
base = "base"

[suggest]
{table}
"""


def test_pools_come_from_the_manifest_and_the_command_line(tmp_path: Path) -> None:
    (tmp_path / "os").mkdir()
    path = tmp_path / "layerforge.toml"
    path.write_text(POOLS.format(table='pools = { cpu = ["api", "web"] }'))
    project = load(path)
    assert pools_for(project, {}) == {"cpu": ["api", "web"], "train": ["train"]}
    assert pools_for(project, {"cpu": ["api"]}) == {
        "cpu": ["api"],
        "web": ["web"],
        "train": ["train"],
    }
    path.write_text(POOLS.format(table='pools = { cpu = ["api", "wbe"] }'))
    with pytest.raises(ManifestError) as info:
        pools_for(load(path), {})
    assert info.value.key == "suggest.pools.cpu" and "did you mean 'web'" in str(info.value)
    path.write_text(POOLS.format(table='pool = { cpu = ["api"] }'))
    with pytest.raises(ManifestError) as bad:
        load(path)
    assert "pools" in str(bad.value)
