"""The generated GitHub workflow is safe to merge as it is (issue 14, item 3).

Pull requests build and verify, and push nothing; the default branch and tags publish. The
actions are pinned by commit, every job has the least permissions it needs, checkouts keep
no credentials, the build installs what it runs (debootstrap, bubblewrap) and runs as root,
and GHCR is reached with GITHUB_TOKEN. zizmor and actionlint (with shellcheck) read it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from layerforge.cli import main
from layerforge.export import EXPORTERS
from tests.conftest import EXAMPLE, require_tools
from tests.unit.test_export import actionlint, fleet_context

BUILDERS = ["layerforge", "bake"]
PUBLISH = "needs.plan.outputs.publish == 'true'"


def with_registry(root: Path, registry: str) -> Path:
    manifest = root / "layerforge.toml"
    manifest.write_text(
        manifest.read_text().replace("[project]\n", f'[project]\nregistry = "{registry}"\n')
    )
    return root


def workflow(root: Path, builder: str, registry: str = "ghcr.io/acme") -> tuple[Path, str]:
    ctx = fleet_context(with_registry(root, registry), builder)
    (generated,) = EXPORTERS["github"].render(ctx)
    generated.path.parent.mkdir(parents=True, exist_ok=True)
    generated.path.write_bytes(generated.content)
    return generated.path, generated.content.decode()


def jobs(text: str) -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load(text)
    result: dict[str, dict[str, Any]] = doc["jobs"]
    return result


def zizmor() -> str:
    found = Path(sys.executable).parent / "zizmor"
    assert found.is_file(), "zizmor is not installed (pip install -e '.[test]')"
    return str(found)


@pytest.mark.parametrize("builder", BUILDERS)
def test_workflow_passes_zizmor(example_copy: Path, builder: str) -> None:
    path, _text = workflow(example_copy, builder)
    proc = subprocess.run(
        [zizmor(), "--offline", "--no-progress", "--format", "plain", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No findings to report" in proc.stdout + proc.stderr


@pytest.mark.parametrize("builder", BUILDERS)
@pytest.mark.parametrize("registry", ["ghcr.io/acme", "registry.example:5000/acme"])
def test_workflow_passes_actionlint_with_shellcheck(
    example_copy: Path, builder: str, registry: str
) -> None:
    require_tools("shellcheck")
    path, _text = workflow(example_copy, builder, registry)
    proc = subprocess.run(
        [actionlint(), "-no-color", str(path)],
        capture_output=True,
        text=True,
        check=False,
        cwd=example_copy,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("builder", BUILDERS)
def test_pull_requests_push_nothing(example_copy: Path, builder: str) -> None:
    _path, text = workflow(example_copy, builder)
    doc = yaml.safe_load(text)
    assert doc["permissions"] == {}  # nothing at the top: each job says what it needs
    assert "pull_request" in doc[True]  # YAML 1.1 reads the key `on` as true
    plan = doc["jobs"]["plan"]
    publish = "\n".join(str(s.get("env", {})) for s in plan["steps"])
    assert "github.event_name != 'pull_request'" in publish
    assert "default_branch" in publish and "refs/tags/" in publish
    publishing = 0
    for name, job in doc["jobs"].items():
        runs = "\n".join(str(step.get("run", "")) for step in job["steps"])
        pushes = re.search(r"--push\b|docker push", runs) is not None
        writes = (job.get("permissions") or {}).get("packages") == "write"
        if PUBLISH in str(job.get("if", "")):
            publishing += 1
            assert pushes, name
        else:
            assert not pushes and not writes, name
            assert "packages: write" not in yaml.safe_dump(job), name
    assert publishing == 4  # three bases and the services
    assert len(doc["jobs"]) == 1 + 2 * 4  # plan, and each job for PRs and for publishing
    assert doc["concurrency"]["cancel-in-progress"] == "${{ github.event_name == 'pull_request' }}"


@pytest.mark.parametrize("builder", BUILDERS)
def test_every_action_pinned_by_sha(example_copy: Path, builder: str) -> None:
    _path, text = workflow(example_copy, builder)
    uses = [line.strip() for line in text.splitlines() if "uses:" in line]
    assert uses
    for line in uses:
        assert re.fullmatch(r"(- )?uses: [\w.-]+/[\w.-]+@[0-9a-f]{40} # v\d+(\.\d+)*", line), line
    for name, job in jobs(text).items():
        for step in job["steps"]:
            if str(step.get("uses", "")).startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False, name


def test_installs_debootstrap_and_bubblewrap_and_runs_as_root(example_copy: Path) -> None:
    _path, text = workflow(example_copy, "layerforge")
    assert "layerforge==" not in text.split("env:", 1)[0]
    for name, job in jobs(text).items():
        if name == "plan":
            continue
        runs = [str(step.get("run", "")) for step in job["steps"]]
        assert any(
            "apt-get install" in r and "debootstrap" in r and "bubblewrap" in r for r in runs
        )
        builds = [r for r in runs if "layerforge build" in r]
        assert builds and all('sudo -E env "PATH=$PATH" layerforge build' in r for r in builds)


def test_ghcr_uses_github_token(example_copy: Path, tmp_path: Path) -> None:
    _path, text = workflow(example_copy, "layerforge", "ghcr.io/acme")
    assert "secrets.REGISTRY_" not in text and "secrets.GITHUB_TOKEN" in text
    other = shutil.copytree(EXAMPLE, tmp_path / "other", ignore=shutil.ignore_patterns(".*"))
    _path, text = workflow(other, "layerforge", "registry.example:5000/acme")
    assert "secrets.REGISTRY_PASSWORD" in text and "secrets.GITHUB_TOKEN" not in text
    assert "packages:" not in text  # GITHUB_TOKEN's packages permission serves only GHCR


def test_install_spec_is_an_option(example_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with_registry(example_copy, "ghcr.io/acme")
    spec = "layerforge==0.2.0"
    assert main(["export", "github", "-f", str(example_copy), "--install", spec]) == 0
    text = (example_copy / ".github/workflows/layerforge.yml").read_text()
    assert yaml.safe_load(text)["env"]["LAYERFORGE_SPEC"] == spec
    assert 'pip install "$LAYERFORGE_SPEC"' in text
    capsys.readouterr()
    assert main(["export", "github", "-f", str(example_copy)]) == 0
    assert "--install" in capsys.readouterr().err  # the default must be published: say so
