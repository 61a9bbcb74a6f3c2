"""Read-only verbs write nothing: no store is created, nothing in the store or the cache
changes (the manifest validation cache, ``CACHE/manifest/``, and the listings ``report`` memoizes
in ``STORE/layerforge/listings/``, best effort, both pure functions of immutable inputs, are the
allowed writes).

Checked: ``plan``, ``build --dry-run``, ``report``, ``gc --dry-run``, ``export dockerfiles``
(without root filesystem tarballs; with them, from a store that already holds the OS image),
``export bake``, on the tiny project (a rootfs directory base and one service). Not read-only
by design: ``export dockerfiles`` with its root filesystem tarballs on a checkout without a
store, which (like ``lock``) imports the OS source into the store to write the tarball."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.integration.tiny import cli, tiny_project

pytestmark = pytest.mark.integration

Snapshot = dict[str, tuple[int, int, int]]

READ_ONLY = (
    ("plan",),
    ("build", "--dry-run"),
    ("report",),
    ("gc", "--dry-run"),
    ("export", "dockerfiles", "--no-rootfs"),
    ("export", "bake"),
)


def snapshot(root: Path, *memos: str) -> Snapshot:
    """Every path under ``root`` but the ``memos`` directories (and their parent's mtime):
    mode, size, mtime."""
    out: Snapshot = {}
    if not root.exists():
        return out
    for path in [root, *root.rglob("*")]:
        rel = path.relative_to(root).as_posix()
        if any(rel == m or rel.startswith(m + "/") or m.startswith(rel + "/") for m in memos):
            continue
        st = path.lstat()
        out[rel] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


def run(project: Path, cache: Path, *verb: str) -> tuple[int, str]:
    code, out, err = cli(*verb, "-f", str(project), "--cache-dir", str(cache))
    return code, out + err


@pytest.mark.parametrize("verb", READ_ONLY, ids=" ".join)
def test_a_read_only_verb_creates_no_store(tmp_path: Path, verb: tuple[str, ...]) -> None:
    project = tiny_project(tmp_path / "p")
    cache = tmp_path / "cache"
    code, output = run(project, cache, "lock")
    assert code == 0, output
    shutil.rmtree(project / ".layerforge")  # a fresh checkout: the lock, no store
    before = snapshot(cache, "manifest")
    code, output = run(project, cache, *verb)
    assert "Traceback" not in output
    assert not (project / ".layerforge").exists(), f"`{' '.join(verb)}` created the store"
    assert snapshot(cache, "manifest") == before, f"`{' '.join(verb)}` changed the cache"


@pytest.mark.parametrize("verb", [*READ_ONLY, ("export", "dockerfiles")], ids=" ".join)
def test_a_read_only_verb_leaves_store_and_cache_alone(
    tmp_path: Path, verb: tuple[str, ...]
) -> None:
    project = tiny_project(tmp_path / "p")
    cache = tmp_path / "cache"
    for step in ("lock", "build --no-verify"):
        code, output = run(project, cache, *step.split())
        assert code == 0, output
    store = project / ".layerforge"
    memo = "layerforge/listings"
    before = snapshot(store, memo), snapshot(cache, "manifest")
    code, output = run(project, cache, *verb)
    assert code == 0, output
    assert snapshot(store, memo) == before[0], f"`{' '.join(verb)}` changed the store"
    assert snapshot(cache, "manifest") == before[1], f"`{' '.join(verb)}` changed the cache"
