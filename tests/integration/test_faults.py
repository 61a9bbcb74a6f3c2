"""Faults in the middle of a transfer, through a fault-injecting proxy in front of the real
registry: every push and pull succeeds in one run with the digests of a fault-free transfer,
and a fault that does not go away is reported as what it is."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest

from layerforge.errors import RegistryError
from layerforge.oci import media
from layerforge.oci.layout import Descriptor, Store, canonical_json
from layerforge.oci.pull import ACCEPT, pull
from layerforge.oci.push import PushSession, push_image
from layerforge.oci.reference import Reference
from layerforge.oci.registry import Client
from tests.integration.faultproxy import Fault, FaultProxy
from tests.integration.registry_server import Registry
from tests.integration.test_registry import cli, cli_json, local_digests, project_copy

pytestmark = pytest.mark.integration

LAYER_SIZES = (4 << 20, (5 << 20) // 2, 1 << 20)


def quick(seconds: float) -> None:
    time.sleep(min(seconds, 0.02))


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, Descriptor]:
    """A store holding one image: three incompressible layers of a few MB and a config."""
    store = Store.open(tmp_path_factory.mktemp("image") / "store")
    rng = random.Random(10)
    layers = []
    for size in LAYER_SIZES:
        data = rng.randbytes(size)
        layers.append(Descriptor(media.OCI_LAYER_GZIP, store.put_bytes(data), size))
    config = canonical_json(
        {"architecture": "amd64", "os": "linux",
         "rootfs": {"type": "layers", "diff_ids": [d.digest for d in layers]}}
    )  # fmt: skip
    config_desc = Descriptor(media.OCI_CONFIG, store.put_bytes(config), len(config))
    manifest = canonical_json(
        {"schemaVersion": 2, "mediaType": media.OCI_MANIFEST, "config": config_desc.to_json(),
         "layers": [d.to_json() for d in layers]}
    )  # fmt: skip
    desc = Descriptor(media.OCI_MANIFEST, store.put_bytes(manifest), len(manifest))
    store.tag("img:latest", desc)
    return store, desc


@pytest.fixture(scope="module")
def clean(registry: Registry, image: tuple[Store, Descriptor]) -> str:
    """The image pushed without faults: the digests every faulty transfer must reproduce."""
    store, desc = image
    return push_direct(registry, store, desc, "faults/clean")


def push_direct(registry: Registry, store: Store, desc: Descriptor, repo: str) -> str:
    with Client(registry.host) as client:
        push_image(PushSession(client, registry.host), store, desc, repo, ["t"])
    return remote_digest(registry, repo)


def remote_digest(registry: Registry, repo: str, tag: str = "t") -> str:
    with Client(registry.host) as client:
        resp = client.request("HEAD", f"/v2/{repo}/manifests/{tag}", headers={"Accept": ACCEPT})
    assert resp.status == 200, resp.status
    return resp.header("Docker-Content-Digest")


def push_via(proxy: FaultProxy, store: Store, desc: Descriptor, repo: str, jobs: int = 3) -> None:
    with Client(proxy.host, sleep=quick) as client:
        session = PushSession(client, proxy.host, jobs=jobs)
        push_image(session, store, desc, repo, ["t"])


def pull_via(host: str, repo: str, target: Path) -> tuple[Store, str]:
    store = Store.open(target)
    with Client(host, sleep=quick) as client:
        pulled = pull(client, Reference(host, repo, "t"), store)
    return store, pulled.descriptor.digest


def assert_same_image(source: Store, desc: Descriptor, copy: Store, digest: str) -> None:
    assert digest == desc.digest
    manifest = json.loads(copy.read_bytes(digest))
    for blob in [*manifest["layers"], manifest["config"]]:
        assert copy.read_bytes(blob["digest"]) == source.read_bytes(blob["digest"])


def fault_id(fault: Fault) -> str:
    what = "manifest" if "manifests" in fault.path else "blob"
    return f"{fault.kind}-{fault.method}-{what}-{fault.at}{'-rst' if fault.rst else ''}"


UPLOAD_FAULTS = [
    # the PATCH is cut halfway: the registry holds part of the body, the session is stale
    Fault("drop-request", "PATCH", "/blobs/uploads/", at=0.5),
    Fault("drop-request", "PATCH", "/blobs/uploads/", at=0.3, rst=True),
    # the registry took the whole PATCH but its answer is lost: a repeat would be refused
    Fault("drop-response", "PATCH", "/blobs/uploads/", at=0.0),
    # the registry receives (and acknowledges) fewer bytes than were sent
    Fault("short-request", "PATCH", "/blobs/uploads/", at=0.6),
    # the closing PUT went through, its answer is lost: the session is gone
    Fault("drop-response", "PUT", "/blobs/uploads/", at=0.0, rst=True),
    Fault("drop-request", "PUT", "/manifests/", at=0.5),
    Fault("drop-response", "PUT", "/manifests/", at=0.0),
    Fault("error", "PATCH", "/blobs/uploads/", at=0.2),
]


@pytest.mark.parametrize("fault", UPLOAD_FAULTS, ids=fault_id)
def test_a_push_survives_one_fault(
    fault: Fault, registry: Registry, image: tuple[Store, Descriptor], clean: str, tmp_path: Path
) -> None:
    store, desc = image
    repo = f"faults/push-{fault_id(fault)}".lower()
    proxy = FaultProxy(registry.host, script=[fault])
    try:
        push_via(proxy, store, desc, repo)
    finally:
        proxy.stop()
    assert proxy.kinds() == {fault.kind}, proxy.injected
    assert remote_digest(registry, repo) == clean == desc.digest
    assert_same_image(store, desc, *pull_via(registry.host, repo, tmp_path / "copy"))


DOWNLOAD_FAULTS = [
    Fault("drop-response", "GET", "/blobs/sha256:", at=0.5),
    Fault("drop-response", "GET", "/blobs/sha256:", at=0.7, rst=True),
    Fault("short-response", "GET", "/blobs/sha256:", at=0.4),
    Fault("drop-response", "GET", "/manifests/", at=0.5),
    # a manifest cut short with a Content-Length that says it is whole
    Fault("short-response", "GET", "/manifests/", at=0.5),
    Fault("error", "GET", "/blobs/sha256:", at=0.8),
]


@pytest.mark.parametrize("fault", DOWNLOAD_FAULTS, ids=fault_id)
def test_a_pull_survives_one_fault(
    fault: Fault, registry: Registry, image: tuple[Store, Descriptor], clean: str, tmp_path: Path
) -> None:
    store, desc = image
    proxy = FaultProxy(registry.host, script=[fault])
    try:
        copy, digest = pull_via(proxy.host, "faults/clean", tmp_path / "copy")
    finally:
        proxy.stop()
    assert proxy.kinds() == {fault.kind}, proxy.injected
    assert_same_image(store, desc, copy, digest)
    assert list((tmp_path / "copy/blobs/sha256").glob(".*")) == []  # no temp file left
    if fault.kind in ("drop-response", "short-response") and "/blobs/" in fault.path:
        # the download went on from the bytes it had, not from the start (after a RST the
        # kernel drops what was not read yet, so only a FIN tells exactly where)
        (hit,) = proxy.injected
        blob = hit.path.rsplit("/", 1)[1]
        ranges = [r for m, p, r in proxy.requests if m == "GET" and p.endswith(blob) and r]
        if fault.rst:
            assert len(ranges) <= 1 and all(int(r[6:-1]) <= hit.offset for r in ranges)
        else:
            assert ranges == [f"bytes={hit.offset}-"], proxy.requests


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_random_faults_push_and_pull_in_one_run(
    seed: int, registry: Registry, image: tuple[Store, Descriptor], clean: str, tmp_path: Path
) -> None:
    store, desc = image
    repo = f"faults/random-{seed}"
    proxy = FaultProxy(registry.host, seed=seed, faults=12, rate=0.4)
    try:
        push_via(proxy, store, desc, repo)
        copy, digest = pull_via(proxy.host, repo, tmp_path / "copy")
    finally:
        proxy.stop()
    assert len(proxy.injected) >= 4, proxy.injected
    assert remote_digest(registry, repo) == clean
    assert_same_image(store, desc, copy, digest)


def test_a_fault_that_persists_is_named_not_called_unreachable(
    registry: Registry, image: tuple[Store, Descriptor], clean: str, tmp_path: Path
) -> None:
    store, desc = image
    proxy = FaultProxy(registry.host, script=[Fault("drop-request", "PATCH", at=0.5)] * 40)
    try:
        with pytest.raises(RegistryError) as info:
            push_via(proxy, store, desc, "faults/persistent", jobs=1)
    finally:
        proxy.stop()
    message = str(info.value)
    assert info.value.exit_code == 3
    assert "unreachable" not in message
    assert "upload of blob sha256:" in message and "faults/persistent" in message
    assert "PATCH" in message and "attempts" in message
    assert "connection" in message.lower()

    proxy = FaultProxy(registry.host, script=[Fault("drop-response", "GET", "/blobs/")] * 40)
    try:
        with pytest.raises(RegistryError) as info:
            pull_via(proxy.host, "faults/clean", tmp_path / "copy")
    finally:
        proxy.stop()
    message = str(info.value)
    assert info.value.exit_code == 3
    assert "unreachable" not in message and "does not match" not in message
    assert "download of blob sha256:" in message and "faults/clean" in message
    assert "attempts" in message
    assert list((tmp_path / "copy/blobs/sha256").iterdir()) == []


def test_the_fleet_is_pushed_and_pulled_through_random_faults(
    fleet: Path, registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`layerforge push` of the example fleet, then every image pulled back, each through a
    proxy that injects faults at random: one run each, the digests of the local store."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    built = fleet / ".layerforge"
    local = local_digests(built)
    pushing = FaultProxy(registry.host, seed=11, faults=12, rate=0.12)
    try:
        project = project_copy(fleet, tmp_path / "p", f"{pushing.host}/fleet")
        doc = cli_json("push", "-f", str(project), "--store", str(built))
    finally:
        pushing.stop()
    pulling = FaultProxy(registry.host, seed=12, faults=8, rate=0.4)
    copy = Store.open(tmp_path / "copy")
    try:
        with Client(pulling.host, sleep=quick) as client:
            pulled = {
                node: pull(client, Reference(pulling.host, f"fleet/{node}", "latest"), copy)
                for node in local
            }
    finally:
        pulling.stop()
    assert len(pushing.injected) >= 6 and len(pulling.injected) >= 4
    assert {i["repository"]: i["digest"] for i in doc["images"]} == {
        f"fleet/{node}": digest for node, digest in local.items()
    }
    source = Store.open(built, create=False)
    for node, digest in local.items():
        assert remote_digest(registry, f"fleet/{node}", "latest") == digest
        assert_same_image(source, Descriptor("", digest, 0), copy, pulled[node].descriptor.digest)


def test_a_push_that_keeps_breaking_exits_3_with_a_message(
    fleet: Path, registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every PATCH is cut: `layerforge push` gives up after its bounded attempts, exit 3, a
    message that names the blob and what broke, no traceback, and no manifest pushed."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    proxy = FaultProxy(registry.host, script=[Fault("drop-request", "PATCH", at=0.5)] * 200)
    try:
        project = project_copy(fleet, tmp_path / "p", f"{proxy.host}/broken")
        code, _, err = cli("push", "cpu", "-f", str(project), "--store", str(fleet / ".layerforge"))
    finally:
        proxy.stop()
    assert code == 3, err
    assert "Traceback" not in err and "unreachable" not in err
    assert "upload of blob sha256:" in err and "to broken/cpu failed after 5 attempts" in err
    assert "during PATCH" in err
    with Client(registry.host) as client:
        resp = client.request("HEAD", "/v2/broken/cpu/manifests/latest", headers={"Accept": ACCEPT})
    assert resp.status == 404
