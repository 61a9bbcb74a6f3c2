"""Item 2 of issue 16: every built image's SBOM is pushed with it, and standard tools find it.

The registry is Debian's ``docker-registry`` (distribution 2.8), which has no referrers API:
the SBOM is found through the tag-schema fallback, ``REPO:sha256-<hex of the image>``, by
skopeo and by the ``oras`` Python client.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import oras.client
import pytest

from layerforge.oci.layout import Store
from tests.integration.registry_server import Registry
from tests.integration.tiny import cli, cli_json, local_digests, tiny_project

pytestmark = pytest.mark.integration

STATUS = """Package: libc6
Status: install ok installed
Architecture: amd64
Source: glibc
Version: 2.36-9+deb12u10

Package: python3.11-minimal
Status: install ok installed
Architecture: amd64
Version: 3.11.2-6+deb12u8
"""

CYCLONEDX = "application/vnd.cyclonedx+json"


def skopeo_raw(ref: str) -> dict[str, Any]:
    out = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout
    doc: dict[str, Any] = json.loads(out)
    return doc


def test_sbom_pushed_and_found_with_oras_and_skopeo(registry: Registry, tmp_path: Path) -> None:
    project = tiny_project(tmp_path / "p", f"{registry.host}/acme")
    (project / "os/var/lib/dpkg").mkdir(parents=True)
    (project / "os/var/lib/dpkg/status").write_text(STATUS)
    args = ("-f", str(project), "--cache-dir", str(tmp_path / "cache"))
    assert cli("lock", *args)[0] == 0
    cli_json("build", "--no-verify", *args)
    code, document, err = cli("sbom", "svc", *args)
    assert code == 0, err
    sbom = json.loads(document)
    purls = {c["purl"] for c in sbom["components"]}
    assert "pkg:deb/test/libc6@2.36-9%2Bdeb12u10?arch=amd64&upstream=glibc" in purls
    assert "pkg:generic/python@3.11.2" in purls

    pushed = cli_json("push", *args)
    images = {i["repository"]: i for i in pushed["images"]}
    digests = local_digests(project / ".layerforge")
    for node in ("base", "svc"):
        info = images[f"acme/{node}"]
        assert info["sbom"]["route"] == "tag-schema"  # this registry has no referrers API
        index = skopeo_raw(f"{registry.host}/acme/{node}:sha256-{digests[node][7:]}")
        (entry,) = index["manifests"]
        assert entry["artifactType"] == CYCLONEDX
        assert entry["digest"] == info["sbom"]["digest"]
        artifact = skopeo_raw(f"{registry.host}/acme/{node}@{entry['digest']}")
        assert artifact["subject"]["digest"] == digests[node]

    client = oras.client.OrasClient(hostname=registry.host, insecure=True)
    svc_sbom = images["acme/svc"]["sbom"]["digest"]
    files = client.pull(target=f"{registry.host}/acme/svc@{svc_sbom}", outdir=str(tmp_path / "o"))
    assert [Path(f).name for f in files] == ["sbom.cdx.json"]
    assert Path(files[0]).read_text() == document
    fallback = client.get_manifest(f"{registry.host}/acme/svc:sha256-{digests['svc'][7:]}")
    assert [m["digest"] for m in fallback["manifests"]] == [svc_sbom]

    # pushing again keeps one entry in the fallback index
    again = cli_json("push", *args)
    assert [i["sbom"]["digest"] for i in again["images"]] == [
        images["acme/base"]["sbom"]["digest"],
        svc_sbom,
    ]
    index = skopeo_raw(f"{registry.host}/acme/svc:sha256-{digests['svc'][7:]}")
    assert [m["digest"] for m in index["manifests"]] == [svc_sbom]


def test_no_sbom_then_sbom_makes_and_keeps_it(tmp_path: Path) -> None:
    project = tiny_project(tmp_path / "p")
    args = ("-f", str(project), "--cache-dir", str(tmp_path / "cache"))
    assert cli("lock", *args)[0] == 0
    cli_json("build", "--no-verify", "--no-sbom", *args)
    store = project / ".layerforge"
    assert not [t for t in Store.open(store).tags() if ":sha256-" in t]
    code, first, err = cli("sbom", "svc", *args)
    assert code == 0, err
    svc = local_digests(store)["svc"]
    assert set(Store.open(store).tags()) >= {f"svc:sha256-{svc[7:]}"}
    assert cli("sbom", "svc", *args)[1] == first  # read back from the store
    code, _, err = cli("sbom", "nope", *args)
    assert code == 2 and "no node 'nope'" in err
