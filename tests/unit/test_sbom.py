"""Item 2 of issue 16: an image's SBOM (CycloneDX 1.6) from its layers and the lock."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from layerforge.gc.storegc import collect
from layerforge.lock.lockfile import Lock, LockedNode, Package
from layerforge.oci.artifact import fallback_tag, merged_index, read_artifact
from layerforge.oci.layer import Layer
from layerforge.oci.layout import Descriptor, Store
from layerforge.oci.media import OCI_LAYER_GZIP, OCI_MANIFEST
from layerforge.records import ImageRecord, PythonInfo
from layerforge.sbom.attach import make_sbom, sbom_ref, write_sbom
from layerforge.sbom.contents import image_contents, parse_dpkg_status

STATUS_1 = """Package: libc6
Status: install ok installed
Architecture: amd64
Source: glibc
Version: 2.36-9+deb12u10

Package: bash
Status: install ok installed
Architecture: amd64
Source: bash (5.2.15-2)
Version: 5.2.15-2+b13

Package: gone
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0
"""

STATUS_2 = (
    STATUS_1.replace("2.36-9+deb12u10", "2.36-9+deb12u11")
    + """
Package: python3.11-minimal
Status: install ok installed
Architecture: amd64
Version: 3.11.2-6+deb12u8
"""
)

METADATA = """Metadata-Version: 2.4
Name: {name}
Version: {version}
{extra}
"""

SITE = "opt/venv/lib/python3.11/site-packages"


def layer(store: Store, files: dict[str, bytes]) -> Layer:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    tar_bytes = raw.getvalue()
    blob = gzip.compress(tar_bytes, mtime=0)
    digest = store.put_bytes(blob)
    return Layer(Descriptor(OCI_LAYER_GZIP, digest, len(blob)), "sha256:" + "0" * 64, "test")


def image(tmp_path: Path) -> tuple[Store, ImageRecord, Lock]:
    store = Store.open(tmp_path / "store")
    os_layer = layer(store, {
        "var/lib/dpkg/status": STATUS_1.encode(),
        "etc/os-release": b'ID=debian\nVERSION_ID="12"\n',
        "usr/bin/python3.11": b"#!/bin/sh\n",
    })  # fmt: skip
    system = layer(store, {"var/lib/dpkg/status": STATUS_2.encode()})
    deps = layer(store, {
        f"{SITE}/lfdep-1.0.dist-info/METADATA":
            METADATA.format(name="LfDep", version="1.0", extra="License-Expression: MIT").encode(),
        f"{SITE}/old-2.0.dist-info/METADATA":
            METADATA.format(name="old", version="2.0", extra="License: BSD").encode(),
        "usr/lib/python3/dist-packages/debianpkg-1.0.dist-info/METADATA":
            METADATA.format(name="debianpkg", version="1.0", extra="").encode(),
    })  # fmt: skip
    app = layer(store, {
        f"{SITE}/.wh.old-2.0.dist-info": b"",
        f"{SITE}/classy-3.0.dist-info/METADATA": METADATA.format(
            name="classy", version="3.0",
            extra="Classifier: License :: OSI Approved :: Apache Software License",
        ).encode(),
    })  # fmt: skip
    manifest = Descriptor(OCI_MANIFEST, store.put_bytes(b"{}"), 2)
    record = ImageRecord(
        "svc",
        "sha256:" + "ab" * 32,
        manifest,
        {},
        (os_layer, system, deps, app),
        PythonInfo("/usr/bin/python3.11", "3.11"),
    )
    pkg = Package("lfdep", "1.0", "lfdep-1.0-py3-none-any.whl", "u", "cd" * 32, 10)
    lock = Lock("3.11", "x86_64-manylinux_2_36", {"svc": LockedNode("sha256:1", (pkg,))})
    return store, record, lock


def components(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["purl"]: c for c in doc["components"]}


def layer_of(component: dict[str, Any]) -> str:
    return str(
        next(p["value"] for p in component["properties"] if p["name"] == "dev.layerforge:layer")
    )


def test_dpkg_status_parses_installed_packages_with_their_source() -> None:
    rows = {r.name: r for r in parse_dpkg_status(STATUS_1)}
    assert set(rows) == {"libc6", "bash"}  # config-files only: not installed
    assert (rows["libc6"].source, rows["libc6"].source_version) == ("glibc", "")
    assert (rows["bash"].source, rows["bash"].source_version) == ("", "5.2.15-2")


def test_dpkg_status_per_layer(tmp_path: Path) -> None:
    """A package belongs to the layer whose status first lists its version."""
    store, record, _ = image(tmp_path)
    contents = image_contents(store, record.layers)
    where = {f"{x.item.name}={x.item.version}": x.layer for x in contents.debs}
    os_digest, system_digest = (x.descriptor.digest for x in record.layers[:2])
    assert where == {
        "bash=5.2.15-2+b13": os_digest,  # unchanged by the system layer
        "libc6=2.36-9+deb12u11": system_digest,  # upgraded there
        "python3.11-minimal=3.11.2-6+deb12u8": system_digest,  # installed there
    }


def test_sbom_document_deterministic_and_valid(tmp_path: Path) -> None:
    store, record, lock = image(tmp_path)
    first = make_sbom(store, record, lock, 315532800)
    assert make_sbom(store, record, lock, 315532800) == first
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(first.decode()) is None
    doc = json.loads(first)
    assert doc["specVersion"] == "1.6"
    assert doc["metadata"]["timestamp"].startswith("1980-01-01T00:00:00")
    assert doc["metadata"]["component"]["type"] == "container"
    assert doc["metadata"]["component"]["purl"] == f"pkg:oci/svc@{record.manifest.digest}"
    found = components(doc)
    digests = [x.descriptor.digest for x in record.layers]
    lfdep = found["pkg:pypi/lfdep@1.0"]
    assert lfdep["hashes"] == [{"alg": "SHA-256", "content": "cd" * 32}]
    assert lfdep["licenses"] == [{"license": {"id": "MIT"}}]
    assert layer_of(lfdep) == digests[2]
    classy = found["pkg:pypi/classy@3.0"]
    assert layer_of(classy) == digests[3]
    assert "hashes" not in classy  # not in the lock: no hash is made up
    assert "pkg:pypi/old@2.0" not in found  # whited out by the app layer
    assert "pkg:pypi/debianpkg@1.0" not in found  # Debian's own, in dist-packages
    bash = "pkg:deb/debian/bash@5.2.15-2%2Bb13?arch=amd64&distro=debian-12&upstream=bash%405.2.15-2"
    assert layer_of(found[bash]) == digests[0]
    libc = "pkg:deb/debian/libc6@2.36-9%2Bdeb12u11?arch=amd64&distro=debian-12&upstream=glibc"
    assert layer_of(found[libc]) == digests[1]
    python = found["pkg:generic/python@3.11.2"]
    assert layer_of(python) == digests[0]


def test_sbom_stored_as_artifact_whose_subject_is_the_image(tmp_path: Path) -> None:
    store, record, lock = image(tmp_path)
    artifact = write_sbom(store, record, lock, 0)
    manifest = store.read_json(artifact.manifest.digest)
    assert manifest["artifactType"] == "application/vnd.cyclonedx+json"
    assert manifest["config"]["mediaType"] == "application/vnd.oci.empty.v1+json"
    assert manifest["subject"]["digest"] == record.manifest.digest
    (blob,) = manifest["layers"]
    assert blob["annotations"]["org.opencontainers.image.title"] == "sbom.cdx.json"
    assert read_artifact(store, artifact.manifest).subject == record.manifest.digest
    assert sbom_ref("svc", record.manifest.digest) == "svc:sha256-" + record.manifest.hex
    assert write_sbom(store, record, lock, 0) == artifact  # the same bytes again


def test_fallback_index_merges_and_never_duplicates() -> None:
    assert fallback_tag("sha256:" + "a" * 64) == "sha256-" + "a" * 64
    one = {"mediaType": OCI_MANIFEST, "digest": "sha256:" + "1" * 64, "size": 1}
    two = {**one, "digest": "sha256:" + "2" * 64}
    first = merged_index(None, one)
    assert first is not None and first["manifests"] == [one]
    assert merged_index(first, one) is None
    both = merged_index(first, two)
    assert both is not None and both["manifests"] == [one, two]


def test_gc_drops_the_sbom_of_an_image_it_drops(tmp_path: Path) -> None:
    store, record, lock = image(tmp_path)
    config = Descriptor("application/vnd.oci.image.config.v1+json", store.put_bytes(b"{}"), 2)

    def manifest(n: int) -> Descriptor:
        raw = json.dumps({"schemaVersion": 2, "config": config.to_json(), "layers": [],
                          "annotations": {"n": str(n)}}).encode()  # fmt: skip
        return Descriptor(OCI_MANIFEST, store.put_bytes(raw), len(raw))

    old, new = manifest(1), manifest(2)
    sboms = {}
    for desc in (old, new):
        artifact = write_sbom(store, replace(record, manifest=desc), lock, 0)
        sboms[desc.digest] = artifact.manifest
        store.tag(sbom_ref("svc", desc.digest), artifact.manifest)
    store.tag_many({f"svc:lf-{'a' * 12}": old, f"svc:lf-{'b' * 12}": new, "svc:latest": new})
    result = collect(store, keep=1)
    assert set(result.untagged) == {f"svc:lf-{'a' * 12}", sbom_ref("svc", old.digest)}
    assert not store.has_blob(sboms[old.digest].digest)
    # the contents kept for SBOMs go with their layers (no image here names them)
    contents = tmp_path / "store/layerforge/contents"
    assert {d for d, _ in result.removed} >= {x.descriptor.digest for x in record.layers}
    assert not list(contents.glob("*.json"))
    assert store.has_blob(sboms[new.digest].digest)
    assert set(store.tags()) == {f"svc:lf-{'b' * 12}", "svc:latest", sbom_ref("svc", new.digest)}
