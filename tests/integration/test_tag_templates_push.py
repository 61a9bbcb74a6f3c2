"""Issue 13 item 5: a node's own repository and tag templates on a real registry, the CI's
commit where there is no git checkout, and the remote cache finding a templated node by its
content key in that repository after a version bump."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.integration.registry_server import Registry
from tests.integration.tiny import cli, cli_json, local_digests, tiny_project
from tests.integration.tools import run

pytestmark = pytest.mark.integration

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(autouse=True)
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never read or write the real ~/.docker/config.json; a CI's commit variable."""
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker/config.json").write_text("{}\n")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.delenv("CI_COMMIT_SHA", raising=False)
    monkeypatch.setenv("GITHUB_SHA", SHA)


def remote_tags(registry: Registry, repository: str) -> set[str]:
    """The repository's tags, less the SBOM's (``sha256-<hex>``: the referrers fallback of a
    registry without the referrers API, see docs/supply-chain.md)."""
    out = run(
        ["skopeo", "list-tags", "--tls-verify=false", f"docker://{registry.host}/{repository}"]
    )
    tags = set(json.loads(out[out.index("{") :])["Tags"])
    return {t for t in tags if not t.startswith("sha256-")}


def test_templates_repository_and_ci_commit(registry: Registry, tmp_path: Path) -> None:
    project = tiny_project(tmp_path / "p", f"{registry.host}/tt", project='version = "1.0.0"')
    toml = project / "layerforge.toml"
    # [services.svc] is the last table; the base keeps the default tags
    toml.write_text(
        toml.read_text() + 'repository = "fks"\ntags = ["svc-{version}", "svc", "svc-{commit}"]\n'
    )
    cache = tmp_path / "cache"
    args = ("-f", str(project), "--cache-dir", str(cache))
    assert cli("lock", *args)[0] == 0
    doc = cli_json("build", "--no-verify", "--push", *args)
    keys = {i["node"]: "lf-" + str(i["key"]).split(":", 1)[1][:12] for i in doc["images"]}
    assert remote_tags(registry, "tt/fks") == {
        keys["svc"], "svc-1.0.0", "svc", "svc-0123456789ab"
    }  # fmt: skip
    assert remote_tags(registry, "tt/base") == {keys["base"], "latest", "1.0.0", "0123456789ab"}
    # another machine at 1.0.1: the templated node is found in its own repository by its key
    fresh = tmp_path / "fresh"
    shutil.copytree(project, fresh, ignore=shutil.ignore_patterns(".layerforge"))
    (fresh / "layerforge.toml").write_text(
        (fresh / "layerforge.toml").read_text().replace('"1.0.0"', '"1.0.1"')
    )
    fargs = ("-f", str(fresh), "--cache-dir", str(tmp_path / "cache2"))
    plan = cli_json("plan", *fargs)
    assert {s["node"]: s["status"] for s in plan["steps"]} == {"base": "remote", "svc": "remote"}
    doc = cli_json("build", "--no-verify", "--push", *fargs)
    assert "svc-1.0.1" in remote_tags(registry, "tt/fks")
    raw = run(["skopeo", "inspect", "--raw", "--tls-verify=false",
               f"docker://{registry.host}/tt/fks:svc-1.0.1"])  # fmt: skip
    annotations = json.loads(raw)["annotations"]
    assert annotations["org.opencontainers.image.version"] == "1.0.1"
    assert local_digests(fresh / ".layerforge")["svc"] in str(doc["push"])
