"""An image's SBOM as CycloneDX 1.6 JSON, written with ``cyclonedx-python-lib``.

The document describes the image (``metadata.component``, type ``container``, purl
``pkg:oci/NODE@DIGEST``) and holds one component per Debian package (``pkg:deb``, from the
dpkg status in the image's layers, with the source package as ``upstream``), per Python
distribution in a ``site-packages`` directory (``pkg:pypi``, the wheel's sha256 from the lock,
the license from its METADATA) and the interpreter (``pkg:generic/python``). Each carries the
property ``dev.layerforge:layer``, the digest of the layer that holds it.

The bytes are a function of the image: the serial number is a UUID-5 of the manifest digest
and the timestamp is the project's ``SOURCE_DATE_EPOCH``. They also depend on the library's
version (its field order), which is why an SBOM is not part of any content key.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from cyclonedx.contrib.license.factories import LicenseFactory
from cyclonedx.model import HashAlgorithm, HashType, Property
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL
from packaging.utils import canonicalize_name

from layerforge.sbom.contents import DebPackage, ImageContents, Located, interpreter_version

LAYER_PROPERTY = "dev.layerforge:layer"
PATH_PROPERTY = "dev.layerforge:path"
MEDIA_TYPE = "application/vnd.cyclonedx+json"
FILE_NAME = "sbom.cdx.json"


@dataclass(frozen=True)
class ImageFacts:
    """What the SBOM says about the image itself."""

    node: str
    tag: str  # lf-<key12>
    digest: str  # the image manifest's
    python_executable: str
    python_version: str  # MAJOR.MINOR
    epoch: int


def _properties(layer: str, path: str = "") -> list[Property]:
    props = [Property(name=LAYER_PROPERTY, value=layer)]
    if path:
        props.append(Property(name=PATH_PROPERTY, value=path))
    return props


def _deb(found: Located[DebPackage], namespace: str, distro: str) -> Component:
    deb = found.item
    qualifiers = {"arch": deb.arch}
    if distro:
        qualifiers["distro"] = distro
    if deb.source:
        qualifiers["upstream"] = deb.source
    if deb.source_version:
        qualifiers["upstream"] = f"{deb.source or deb.name}@{deb.source_version}"
    purl = PackageURL("deb", namespace, deb.name, deb.version, qualifiers)
    return Component(
        name=deb.name,
        version=deb.version,
        type=ComponentType.LIBRARY,
        purl=purl,
        bom_ref=purl.to_string(),
        properties=_properties(found.layer),
    )


def _interpreter(facts: ImageFacts, contents: ImageContents) -> Component:
    version = interpreter_version(contents, facts.python_version)
    purl = PackageURL("generic", None, "python", version)
    layer = contents.executables.get(facts.python_executable.lstrip("/"), "")
    props = [Property(name=PATH_PROPERTY, value=facts.python_executable)]
    if layer:
        props.insert(0, Property(name=LAYER_PROPERTY, value=layer))
    return Component(
        name="python",
        version=version,
        type=ComponentType.APPLICATION,
        purl=purl,
        bom_ref="interpreter",
        properties=props,
    )


def image_sbom(
    facts: ImageFacts, contents: ImageContents, wheel_hashes: Mapping[tuple[str, str], str]
) -> bytes:
    """The CycloneDX 1.6 JSON document of one image (see the module's docstring).

    ``wheel_hashes``: (canonical name, version) -> sha256 of the locked file."""
    image_purl = PackageURL("oci", None, facts.node, facts.digest)
    root = Component(
        name=facts.node,
        version=facts.tag,
        type=ComponentType.CONTAINER,
        purl=image_purl,
        bom_ref=image_purl.to_string(),
    )
    stamp = datetime.datetime.fromtimestamp(facts.epoch, datetime.UTC)
    bom = Bom(
        serial_number=uuid.uuid5(uuid.NAMESPACE_URL, facts.digest),
        metadata=BomMetaData(component=root, timestamp=stamp),
    )
    namespace = contents.os_release.get("ID", "debian") or "debian"
    version_id = contents.os_release.get("VERSION_ID", "")
    distro = f"{namespace}-{version_id}" if version_id else ""
    components = [_deb(found, namespace, distro) for found in contents.debs]
    licenses = LicenseFactory()
    for found in contents.dists:
        dist = found.item
        name = canonicalize_name(dist.name)
        purl = PackageURL("pypi", None, name, dist.version)
        sha = wheel_hashes.get((name, dist.version))
        components.append(
            Component(
                name=name,
                version=dist.version,
                type=ComponentType.LIBRARY,
                purl=purl,
                bom_ref=f"{purl.to_string()}#{dist.path}",
                hashes=[HashType(alg=HashAlgorithm.SHA_256, content=sha)] if sha else [],
                licenses=[licenses.make_from_string(dist.license)] if dist.license else [],
                properties=_properties(found.layer, "/" + dist.path),
            )
        )
    components.append(_interpreter(facts, contents))
    for component in components:
        bom.components.add(component)
    bom.register_dependency(root, components)
    return JsonV1Dot6(bom).output_as_string(indent=2).encode() + b"\n"
