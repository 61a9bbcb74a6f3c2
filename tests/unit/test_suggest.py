"""Issue 15 item 2, the pure parts of ``layerforge suggest``: the predictor (own layers
exact, small layers additive), pulls per pool, the Pareto front and the recommendation."""

from __future__ import annotations

from pathlib import Path

import pytest

from layerforge.errors import UsageError
from layerforge.suggest.candidates import Edit
from layerforge.suggest.edit import edited_text
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
