"""Issue 13 item 5: tag templates per node (``repository``, ``tags``), a version per base,
and the commit tag (a clean checkout, or the CI's commit variable where there is no git)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from layerforge import api
from layerforge.manifest import load
from layerforge.plan import image_labels
from layerforge.publish import Target, push_commit, tags_for
from tests.unit.test_manifest import GOOD, error_of, write

KEY = "sha256:" + "ab" * 32

TEMPLATED = GOOD.replace(
    'python = "3.11"', 'python = "3.11"\nversion = "1.4.0"\nregistry = "r.test/acme"'
).replace(
    'requirements = "requirements/ml.txt"',
    'requirements = "requirements/ml.txt"\nversion = "2"\nrepository = "fks"\n'
    'tags = ["docker-ml-{version}", "docker-ml", "ml-{commit}", "{project}-{node}-{key}"]',
)


def test_templates_expand_per_node(tmp_path: Path) -> None:
    project = load(write(tmp_path, TEMPLATED))
    assert tags_for(project, "ml", KEY, "0123456789ab") == [
        "lf-abababababab", "docker-ml-2", "docker-ml", "ml-0123456789ab",
        "demo-ml-abababababab",
    ]  # fmt: skip
    # without a commit (a dirty tree) the {commit} template is skipped
    assert not [t for t in tags_for(project, "ml", KEY, None) if t.startswith("ml-")]
    # nodes without templates keep today's tags: the key, latest, the version, the commit
    assert tags_for(project, "api", KEY, "0123456789ab", ("extra",)) == [
        "lf-abababababab", "latest", "1.4.0", "0123456789ab", "extra",
    ]  # fmt: skip
    target = Target.of(project)
    assert (target.repository("ml"), target.repository("api")) == ("acme/fks", "acme/api")


def test_a_base_version_labels_its_images_not_its_key(tmp_path: Path) -> None:
    project = load(write(tmp_path, TEMPLATED))
    assert image_labels(project, project.nodes["ml"]) == {"version": "2"}
    assert image_labels(project, project.nodes["api"], "abc") == {
        "version": "1.4.0",
        "revision": "abc",
    }


@pytest.mark.parametrize(
    ("tags", "needle"),
    [('["v{verison}"]', "verison"), ('["a b"]', "not a valid tag"), ('["{version:>9}"]', "")],
)
def test_bad_templates_name_the_key(tmp_path: Path, tags: str, needle: str) -> None:
    text = GOOD.replace('base = "ml"', f'base = "ml"\ntags = {tags}')
    err = error_of(tmp_path, text)
    assert "services.api.tags" in str(err) + str(err.key) and needle in str(err)


def test_a_shared_repository_needs_tags_on_every_node(tmp_path: Path) -> None:
    text = GOOD.replace('base = "ml"', 'base = "ml"\nrepository = "fks"').replace(
        'requirements = "requirements/ml.txt"',
        'requirements = "requirements/ml.txt"\nrepository = "fks"\ntags = ["ml"]',
    )
    err = error_of(tmp_path, text)
    assert "fks" in str(err) and "tags" in str(err)


def test_bad_repository(tmp_path: Path) -> None:
    err = error_of(tmp_path, GOOD.replace('base = "ml"', 'base = "ml"\nrepository = "Big Repo"'))
    assert "services.api.repository" in str(err) + str(err.key)


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


def test_the_commit_of_a_clean_checkout_or_of_the_ci(tmp_path: Path) -> None:
    ci = "fedcba9876543210fedcba9876543210fedcba98"
    plain = tmp_path / "plain"  # not a git checkout: the CI's variable
    plain.mkdir()
    assert push_commit(plain, ci) == "fedcba987654"
    assert push_commit(plain, None) is None
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "f").write_text("1")
    _git(repo, "add", "f")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()  # fmt: skip
    assert push_commit(repo, ci) == head[:12]  # the checkout's own commit comes first
    (repo / "f").write_text("2")
    assert push_commit(repo, ci) is None  # a dirty tree has no commit, whatever the CI says


def test_api_reads_the_ci_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_SHA", raising=False)
    monkeypatch.delenv("CI_COMMIT_SHA", raising=False)
    assert api.ci_commit() is None
    monkeypatch.setenv("CI_COMMIT_SHA", "ABCDEF0123456789")
    assert api.ci_commit() == "abcdef0123456789"
    monkeypatch.setenv("GITHUB_SHA", "0123456789abcdef")
    assert api.ci_commit() == "0123456789abcdef"
    monkeypatch.setenv("GITHUB_SHA", "not-hex")
    assert api.ci_commit() == "abcdef0123456789"
