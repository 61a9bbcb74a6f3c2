"""Registries for real: a ``distribution`` registry on 127.0.0.1 (anonymous, htpasswd Basic),
a Bearer token gate whose tokens expire mid-push, skopeo/podman/buildah reading what we push
and export, the remote cache, and registry references as OS sources."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from layerforge.cli import main
from layerforge.fsutil import sha256_digest
from layerforge.oci.layout import Descriptor, Store, canonical_json
from layerforge.oci.media import OCI_CONFIG, OCI_INDEX, OCI_MANIFEST
from tests.conftest import require_tools
from tests.integration.registry_server import Registry, TokenGate
from tests.integration.tools import Buildah, run

pytestmark = pytest.mark.integration


def cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def cli_json(*args: str) -> dict[str, Any]:
    code, out, err = cli(*args, "--json")
    assert code == 0, err[-3000:]
    doc: dict[str, Any] = json.loads(out)
    return doc


def project_copy(fleet: Path, target: Path, registry: str) -> Path:
    """The fleet's manifest, lock and sources (not its store) with project.registry set."""
    shutil.copytree(fleet, target, ignore=shutil.ignore_patterns(".layerforge", "build.json"))
    manifest = target / "layerforge.toml"
    text = manifest.read_text()
    manifest.write_text(
        text.replace('name = "acme-ml"', f'name = "acme-ml"\nregistry = "{registry}"', 1)
    )
    return target


def raw_digest(ref: str) -> str:
    out = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout
    return sha256_digest(out)


@pytest.fixture(autouse=True)
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Never read or write the real ~/.docker/config.json."""
    directory = tmp_path / "docker"
    directory.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(directory))
    return directory / "config.json"


def local_digests(store: Path) -> dict[str, str]:
    tags = Store.open(store, create=False).tags()
    return {ref.split(":")[0]: d.digest for ref, d in tags.items() if ref.endswith(":latest")}


@pytest.fixture(scope="module")
def pushed(
    fleet: Path, registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """The whole fleet pushed once (and a second time) to acme/ on the anonymous registry."""
    project = project_copy(fleet, tmp_path_factory.mktemp("push") / "p", f"{registry.host}/acme")
    store = str(fleet / ".layerforge")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DOCKER_CONFIG", str(project / ".docker"))
        first = cli_json("push", "-f", str(project), "--store", store)
        built = cli_json("build", "--push", "-f", str(project), "--store", store)
        second = cli_json("push", "-f", str(project), "--store", store)
    assert {i["status"] for i in built["images"]} == {"cached"}
    return {"project": project, "first": first, "second": second}


def test_push_then_skopeo_reads_the_same_digests(
    pushed: dict[str, Any], registry: Registry, fleet: Path, tmp_path: Path
) -> None:
    local = local_digests(fleet / ".layerforge")
    images = {img["repository"]: img for img in pushed["first"]["images"]}
    assert set(images) == {f"acme/{n}" for n in local}
    for node, digest in local.items():
        assert images[f"acme/{node}"]["digest"] == digest
        for tag in images[f"acme/{node}"]["tags"]:
            assert raw_digest(f"{registry.host}/acme/{node}:{tag}") == digest
    tags = images["acme/api"]["tags"]
    assert tags[1:3] == ["latest", "1.0.0"] and re.fullmatch(r"lf-[0-9a-f]{12}", tags[0])
    # copied back by a tool we did not write, byte for byte
    layout = tmp_path / "copy"
    run(["skopeo", "copy", "--src-tls-verify=false",
         f"docker://{registry.host}/acme/api:latest", f"oci:{layout}:api"])  # fmt: skip
    copied = Store.open(layout, create=False).resolve("api")
    assert copied is not None and copied.digest == local["api"]


def test_children_mount_their_parents_blobs_and_a_second_push_uploads_nothing(
    pushed: dict[str, Any],
) -> None:
    first = {img["repository"]: img for img in pushed["first"]["images"]}
    assert first["acme/cpu"]["blobs"]["mounted"] == 0
    for child in ("acme/ml", "acme/api", "acme/training"):
        assert first[child]["blobs"]["mounted"] >= 4, first[child]
    # an application layer is the only new layer of a service: a few KB, no base layers
    assert first["acme/api"]["uploaded_bytes"] < 100_000
    for img in pushed["second"]["images"]:
        assert img["uploaded_bytes"] == 0
        assert img["blobs"]["uploaded"] == img["blobs"]["mounted"] == 0


def test_remote_cache_archive_podman_and_buildah(
    pushed: dict[str, Any], tmp_path: Path, registry: Registry, fleet: Path
) -> None:
    """A fresh machine: plan says 'in registry', build fetches instead of building, and the
    exported archive loads in podman (same digest) and runs in buildah."""
    require_tools("podman", "buildah")
    project = pushed["project"]
    store = str(tmp_path / "fresh-store")
    plan = cli_json("plan", "-f", str(project), "--store", store, "api")
    assert [(s["node"], s["status"]) for s in plan["steps"]] == [
        ("cpu", "remote"), ("api", "remote")
    ]  # fmt: skip
    code, out, _ = cli("plan", "-f", str(project), "--store", store, "api")
    assert code == 0 and "in registry" in out
    built = cli_json("build", "-f", str(project), "--store", store, "api")
    assert {i["node"]: i["status"] for i in built["images"]} == {"cpu": "remote", "api": "remote"}
    fresh = Store.open(Path(store), create=False)
    layers = fresh.read_json(local_digests(Path(store))["api"])["layers"]
    assert not any(fresh.has_blob(x["digest"]) for x in layers)  # fetched only when needed
    again = cli_json("build", "-f", str(project), "--store", store, "api")
    assert {i["status"] for i in again["images"]} == {"cached"}
    # verify needs the layers: it fetches what the remote-cache hit left in the registry
    checks = cli_json("verify", "-f", str(project), "--store", store, "api")["checks"]
    assert checks and all(c["ok"] for c in checks)
    assert all(fresh.has_blob(x["digest"]) for x in layers)
    # sizes of a remote-cache hit come from the layer descriptors' annotation (budgets and
    # reports need them, and the layers may never be fetched)
    sizes = {
        i["node"]: [x["uncompressed_size"] for x in i["layers"]]
        for i in cli_json("report", "-f", str(project), "--store", store, "api")["images"]
    }
    built_here = cli_json("report", "-f", str(project), "--store", str(fleet / ".layerforge"))
    assert sizes == {i["node"]: [x["uncompressed_size"] for x in i["layers"]]
                     for i in built_here["images"] if i["node"] in sizes}  # fmt: skip
    assert all(size > 0 for per_node in sizes.values() for size in per_node)
    # a changed service on another fresh machine: its base comes from the registry, with
    # the layers (the local build sits on them), and only the service is built
    changed = tmp_path / "changed"
    shutil.copytree(project, changed)
    main_py = changed / "services/api/api/main.py"
    main_py.write_text(main_py.read_text() + "# changed\n")
    other = tmp_path / "other-store"
    mixed = cli_json("build", "-f", str(changed), "--store", str(other), "api")
    assert {i["node"]: i["status"] for i in mixed["images"]} == {"cpu": "remote", "api": "built"}
    cpu = Store.open(other, create=False).read_json(local_digests(other)["cpu"])
    assert all((other / "blobs/sha256" / x["digest"][7:]).is_file() for x in cpu["layers"])

    archive = tmp_path / "api.tar"
    doc = cli_json(
        "export", "archive", "api", "-o", str(archive), "-f", str(project), "--store", store
    )
    expected = local_digests(fleet / ".layerforge")["api"]
    assert doc["digest"] == expected
    # podman and buildah share one storage (vfs): buildah then reuses the loaded layers.
    # podman wants a runroot under 50 characters, hence a short directory in /tmp.
    short = Path(tempfile.mkdtemp(prefix="lf-pm-"))
    buildah = Buildah(short)
    buildah.env.pop("DOCKER_CONFIG")  # buildah insists that an auth file it is told of exists
    podman = ["podman", "--root", str(short / "root"), "--runroot", str(short / "run"),
              "--storage-driver", "vfs"]  # fmt: skip
    try:
        out = run([*podman, "load", "-i", str(archive)])
        assert "Loaded image" in out, out
        info = json.loads(run([*podman, "image", "inspect", doc["image"]]))
        assert info[0]["Digest"] == expected
        container = buildah("from", "--pull-never", "--quiet", f"oci-archive:{archive}")
        ok = buildah.run_in(
            container.split()[-1], "python", "-c", "import api.main; print('imported', 6 * 7)"
        )
    finally:
        shutil.rmtree(short, ignore_errors=True)
    assert "imported 42" in ok


def test_killed_push_resumes(fleet: Path, registry: Registry, tmp_path: Path) -> None:
    project = project_copy(fleet, tmp_path / "p", f"{registry.host}/killed")
    args = [sys.executable, "-m", "layerforge", "push", "ml", "-f", str(project),
            "--store", str(fleet / ".layerforge"), "--json"]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        event = json.loads(line)
        if event["event"] == "finish" and "digest" in event.get("data", {}):
            proc.kill()  # one blob is in, the others are mid-upload
            break
    proc.wait(timeout=60)
    proc.stderr.close()
    assert proc.returncode != 0
    doc = cli_json("push", "ml", "-f", str(project), "--store", str(fleet / ".layerforge"))
    local = local_digests(fleet / ".layerforge")
    images = {i["repository"]: i for i in doc["images"]}
    assert images["killed/cpu"]["blobs"]["present"] >= 1
    for node in ("cpu", "ml"):
        assert raw_digest(f"{registry.host}/killed/{node}:latest") == local[node]
    run(["skopeo", "copy", "--src-tls-verify=false",
         f"docker://{registry.host}/killed/ml:latest", f"oci:{tmp_path / 'ml'}:ml"])  # fmt: skip


def test_basic_auth_errors_and_login(fleet: Path, tmp_path: Path, docker_config: Path) -> None:
    require_tools("docker-registry", "htpasswd")
    reg = Registry(tmp_path / "reg", users={"alice": "wonder"})
    try:
        project = project_copy(fleet, tmp_path / "p", f"{reg.host}/team")
        args = ("push", "cpu", "-f", str(project), "--store", str(fleet / ".layerforge"))
        code, _, err = cli(*args)
        assert code == 3
        assert reg.host in err and "team/cpu" in err and f"layerforge login {reg.host}" in err
        code, _, err = cli("login", reg.host, "-u", "alice", "-p", "wrong")
        assert code == 3 and "rejected" in err
        assert not docker_config.exists()
        code, _, err = cli("login", reg.host, "-u", "alice", "-p", "wonder")
        assert code == 0, err
        assert reg.host in json.loads(docker_config.read_text())["auths"]
        doc = cli_json(*args)
        assert doc["images"][0]["blobs"]["uploaded"] >= 3
    finally:
        reg.stop()


def test_bearer_token_expiring_mid_push(
    fleet: Path, registry: Registry, tmp_path: Path, docker_config: Path
) -> None:
    gate = TokenGate(registry.host, "bob", "builder", uses=5)
    try:
        project = project_copy(fleet, tmp_path / "p", f"{gate.host}/bearer")
        args = ("push", "cpu", "-f", str(project), "--store", str(fleet / ".layerforge"))
        code, _, err = cli(*args)
        assert code == 3 and f"layerforge login {gate.host}" in err
        assert cli("login", gate.host, "-u", "bob", "-p", "builder")[0] == 0
        cli_json(*args)
        assert gate.expired >= 1, "the token never expired: the test proves nothing"
        assert len(gate.issued) >= 3
        assert any("repository:bearer/cpu:pull,push" in q.get("scope", []) for q in gate.issued)
        local = local_digests(fleet / ".layerforge")
        assert raw_digest(f"{registry.host}/bearer/cpu:latest") == local["cpu"]
    finally:
        gate.stop()


def test_identity_token_from_config_json(
    fleet: Path, registry: Registry, tmp_path: Path, docker_config: Path
) -> None:
    gate = TokenGate(registry.host, "bob", "builder")
    try:
        docker_config.write_text(
            json.dumps({"auths": {f"http://{gate.host}": {"identitytoken": gate.refresh_token}}})
        )
        project = project_copy(fleet, tmp_path / "p", f"{gate.host}/identity")
        cli_json("push", "cpu", "-f", str(project), "--store", str(fleet / ".layerforge"))
        assert gate.issued, "no token was exchanged"
        assert all(q.get("grant_type") == ["refresh_token"] for q in gate.issued)
    finally:
        gate.stop()


# -- registry references as OS sources ---------------------------------------------------------


def os_image(fleet: Path, layout: Path, marker: str, *, index: bool = False) -> str:
    """An OCI layout holding just the fleet's debootstrap layer (plus a marker label);
    with ``index``, tagged as a multi-platform index whose linux/amd64 entry is the image."""
    src = Store.open(fleet / ".layerforge", create=False)
    record = json.loads(next((fleet / ".layerforge/layerforge/sources").glob("*.json")).read_text())
    layer = record["layers"][0]
    layer["descriptor"].pop("annotations", None)  # as an image built by another tool
    dst = Store.open(layout)
    with src.blob_path(layer["descriptor"]["digest"]).open("rb") as fh, dst.ingest() as w:
        shutil.copyfileobj(fh, w, 1 << 20)
        w.commit(layer["descriptor"]["digest"])
    config = canonical_json({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": record["env"], "Labels": {"marker": marker}},
        "rootfs": {"type": "layers", "diff_ids": [layer["diff_id"]]},
        "history": [{"created_by": "debootstrap"}],
    })  # fmt: skip
    manifest = canonical_json({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": dst.put_bytes(config), "size": len(config)},
        "layers": [layer["descriptor"]],
    })  # fmt: skip
    digest = dst.put_bytes(manifest)
    desc = Descriptor(OCI_MANIFEST, digest, len(manifest))
    if index:
        entries = [
            {**desc.to_json(), "platform": {"architecture": arch, "os": "linux"}}
            for arch in ("arm64", "amd64")
        ]
        raw = canonical_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
        desc = Descriptor(OCI_INDEX, dst.put_bytes(raw), len(raw))
    dst.tag("base", desc)
    return digest


def small_project(directory: Path, base: str) -> Path:
    (directory / "app" / "hello").mkdir(parents=True)
    (directory / "app" / "hello" / "__init__.py").write_text("MESSAGE = 'hello'\n")
    (directory / "layerforge.toml").write_text(
        f'[project]\nname = "small"\npython = "3.11"\n\n[bases.os]\nfrom = "{base}"\n\n'
        '[services.hello]\nbase = "os"\nsource = "app"\nverify = ["import hello"]\n'
    )
    return directory


def test_fleet_from_a_registry_reference(
    fleet: Path, registry: Registry, tmp_path: Path, shared_cache: Path
) -> None:
    first = os_image(fleet, tmp_path / "os1", "one")
    second = os_image(fleet, tmp_path / "os2", "two", index=True)
    ref = f"{registry.host}/base/bookworm:1"
    copy = ["skopeo", "copy", "--dest-tls-verify=false"]
    run([*copy, f"oci:{tmp_path / 'os1'}:base", f"docker://{ref}"])
    project = small_project(tmp_path / "small", ref)
    cache = ["--cache-dir", str(shared_cache)]
    assert cli("lock", "-f", str(project), *cache)[0] == 0
    lock = (project / "layerforge.lock").read_text()
    assert first in lock
    built = cli_json("build", "-f", str(project), *cache)
    hello = {i["node"]: i for i in built["images"]}["hello"]
    store = project / ".layerforge"
    os_layer = Store.open(tmp_path / "os1", create=False).read_json(first)["layers"][0]
    out = json.loads(run(["skopeo", "inspect", "--raw", f"oci:{store}:hello:latest"]))
    # the same layer, which our manifest annotates with its tar's size (counted on import)
    sources = fleet / ".layerforge/layerforge/sources"
    size = json.loads(next(sources.glob("*.json")).read_text())["layers"][0]["uncompressed_size"]
    assert size > 0
    annotations = {"dev.layerforge.uncompressed-size": str(size)}
    assert out["layers"][0] == {**os_layer, "annotations": annotations}
    # the tag moves: nothing changes until lock --upgrade
    run([*copy, "--all", f"oci:{tmp_path / 'os2'}:base", f"docker://{ref}"])
    shutil.rmtree(store)
    assert cli("lock", "-f", str(project), *cache)[0] == 0
    assert (project / "layerforge.lock").read_text() == lock
    again = {i["node"]: i for i in cli_json("build", "-f", str(project), *cache)["images"]}
    assert again["hello"]["manifest"] == hello["manifest"]
    assert cli("lock", "--upgrade", "-f", str(project), *cache)[0] == 0
    assert second in (project / "layerforge.lock").read_text()  # picked out of the index


def test_registry_source_errors_exit_3(registry: Registry, tmp_path: Path) -> None:
    missing = small_project(tmp_path / "missing", f"{registry.host}/base/nothing:1")
    code, _, err = cli("lock", "-f", str(missing))
    assert code == 3 and "base/nothing" in err and "no manifest" in err
    bad = small_project(tmp_path / "bad", f"{registry.host}/Base:1")
    code, _, err = cli("lock", "-f", str(bad))
    assert code == 3 and "bad image reference" in err
    down = small_project(tmp_path / "down", "127.0.0.1:9/base/x:1")
    code, _, err = cli("lock", "-f", str(down))
    assert code == 3 and "unreachable" in err
    for project in (missing, bad, down):
        assert not (project / "layerforge.lock").exists()
