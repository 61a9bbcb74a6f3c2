"""Pull an image from a registry into the local store, every digest verified.

Manifest (an index or Docker list picks ``linux/amd64``), then config and layers streamed
into the store (temp file, hashed while written, renamed under its digest only if it
matches), then the manifest itself. A blob already in the store is not fetched again.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from layerforge.errors import ConnectionFault, RegistryError
from layerforge.events import Event, NullReporter, Reporter
from layerforge.fsutil import sha256_digest
from layerforge.oci import media
from layerforge.oci.layout import BlobWriter, Descriptor, Store
from layerforge.oci.reference import Reference
from layerforge.oci.registry import Client, check

ACCEPT = ", ".join((media.OCI_INDEX, media.OCI_MANIFEST, media.DOCKER_LIST, media.DOCKER_MANIFEST))


@dataclass(frozen=True)
class Pulled:
    descriptor: Descriptor  # the platform manifest, as stored
    config: dict[str, Any]


MANIFEST_ATTEMPTS = 3


def head_manifest(
    client: Client,
    registry: str,
    repo: str,
    reference: str,
    *,
    scope: str | None = None,
    action: str = "pull from",
) -> str | None:
    """HEAD ``repo:reference``: the digest the registry announces for it ("" when it does not
    say), or None when it has no such manifest."""
    resp = client.request(
        "HEAD",
        f"/v2/{repo}/manifests/{reference}",
        headers={"Accept": ACCEPT},
        scope=scope or f"repository:{repo}:pull",
    )
    if resp.status == 404:
        return None
    check(resp, registry, repo, action)
    return resp.header("Docker-Content-Digest")


def fetch_manifest(client: Client, ref: Reference, reference: str) -> tuple[bytes, str] | None:
    """(bytes, media type) of a manifest or index; None if the registry has no such tag.

    The bytes must hash to the digest asked for, or to the ``Docker-Content-Digest`` the
    registry announces for a tag, and parse as JSON: a body cut short on the way (with a
    ``Content-Length`` that says it is whole) is fetched again."""
    problem = ""
    for _ in range(MANIFEST_ATTEMPTS):
        resp = client.request(
            "GET",
            f"/v2/{ref.repository}/manifests/{reference}",
            headers={"Accept": ACCEPT},
            scope=f"repository:{ref.repository}:pull",
        )
        if resp.status == 404:
            return None
        check(resp, ref.registry, ref.repository, "pull from")
        data = resp.data
        problem = _manifest_problem(data, reference, resp.header("Docker-Content-Digest"))
        if not problem:
            kind = resp.header("Content-Type").split(";")[0].strip()
            return data, kind or str(json.loads(data).get("mediaType", ""))
    raise RegistryError(
        f"registry {ref.registry}: manifest {reference} of {ref.repository} {problem} "
        f"({MANIFEST_ATTEMPTS} attempts)",
        hint="the registry or a proxy altered the manifest; nothing was stored",
    )


def _manifest_problem(data: bytes, reference: str, announced: str) -> str:
    """What is wrong with a manifest's bytes ("" when nothing is)."""
    expected = reference if reference.startswith("sha256:") else announced
    if expected.startswith("sha256:") and sha256_digest(data) != expected:
        return (
            f"does not match its digest: the registry sent {len(data)} bytes whose digest is "
            f"{sha256_digest(data)}, expected {expected}"
        )
    try:
        doc = json.loads(data)
    except ValueError as exc:
        return f"is not valid JSON ({len(data)} bytes: {exc})"
    return "" if isinstance(doc, dict) else "is not a JSON object"


def _platform(data: bytes, ref: Reference) -> str:
    index = json.loads(data)
    for entry in index.get("manifests", []):
        platform = entry.get("platform", {})
        if platform.get("os") == "linux" and platform.get("architecture") == "amd64":
            return str(entry["digest"])
    raise RegistryError(
        f"{ref}: the image index has no linux/amd64 image",
        hint="use an image built for linux/amd64",
    )


def resolve_manifest(client: Client, ref: Reference) -> tuple[str, bytes, str]:
    """(digest, bytes, media type) of the linux/amd64 image manifest behind ``ref``."""
    found = fetch_manifest(client, ref, ref.reference)
    if found is None:
        raise RegistryError(
            f"registry {ref.registry}: {ref.repository} has no manifest {ref.reference!r}",
            hint="check the tag (or digest), e.g. with `skopeo list-tags docker://REPO`",
        )
    data, kind = found
    if kind in (media.OCI_INDEX, media.DOCKER_LIST) or "manifests" in json.loads(data):
        digest = _platform(data, ref)
        inner = fetch_manifest(client, ref, digest)
        if inner is None:
            raise RegistryError(f"registry {ref.registry}: {ref} lists {digest} but lacks it")
        data, kind = inner
    return sha256_digest(data), data, kind


DOWNLOAD_ATTEMPTS = 4  # requests per blob, each retrying its own connection faults


def pull_blob(
    client: Client, ref: Reference, store: Store, desc: Descriptor, reporter: Reporter
) -> None:
    """One blob into the store, resumed with ``Range`` when the connection breaks; stored
    under its digest only when all of it arrived and it hashes right."""
    if store.has_blob(desc.digest):
        return
    task = f"pull:{ref.repository}@{desc.digest[7:19]}"
    reporter.emit(Event("start", task, f"pull {desc.digest[7:19]}", total=desc.size))
    with store.ingest() as writer:
        sink = _Counting(writer, lambda n: reporter.emit(Event("progress", task, done=n)))
        for _ in range(DOWNLOAD_ATTEMPTS):
            try:
                resp = client.request(
                    "GET",
                    f"/v2/{ref.repository}/blobs/{desc.digest}",
                    scope=f"repository:{ref.repository}:pull",
                    sink=sink,
                )
            except ConnectionFault as exc:
                raise exc.reworded(
                    f"registry {ref.registry}: download of blob {desc.digest} from "
                    f"{ref.repository} failed after {exc.attempts} attempts, with "
                    f"{writer.size} of {desc.size} bytes received: {exc.cause}"
                ) from None
            check(resp, ref.registry, ref.repository, "pull from")
            if writer.size >= desc.size:
                break  # else the body ended early without saying so: ask for the rest
        if writer.size != desc.size or writer.digest != desc.digest:
            raise RegistryError(
                f"registry {ref.registry}: blob {desc.digest} of {ref.repository} does not "
                f"match its digest: the registry sent {writer.size} bytes whose sha256 is "
                f"{writer.digest.removeprefix('sha256:')}, expected {desc.size} bytes with "
                f"sha256 {desc.digest.removeprefix('sha256:')}; nothing was stored",
                hint="retry; if it persists the registry holds a corrupt blob",
            )
        writer.commit(desc.digest)
    reporter.emit(Event("finish", task, data={"ok": True, "bytes": desc.size}))


class _Counting:
    """A download sink over a blob writer that reports progress."""

    def __init__(self, inner: BlobWriter, progress: Callable[[int], None]) -> None:
        self._inner = inner
        self._progress = progress

    @property
    def size(self) -> int:
        return self._inner.size

    def write(self, data: bytes) -> int:
        written = self._inner.write(data)
        self._progress(self._inner.size)
        return written

    def reset(self) -> None:
        self._inner.reset()
        self._progress(0)


def pull(client: Client, ref: Reference, store: Store, reporter: Reporter | None = None) -> Pulled:
    """Config, layers, then the manifest into ``store``; returns the manifest descriptor."""
    reporter = reporter or NullReporter()
    digest, data, kind = resolve_manifest(client, ref)
    manifest = json.loads(data)
    config_desc = Descriptor.from_json(manifest["config"])
    for raw in [*manifest.get("layers", []), manifest["config"]]:
        pull_blob(client, ref, store, Descriptor.from_json(raw), reporter)
    store.put_bytes(data)
    desc = Descriptor(
        kind, digest, len(data), platform=(("architecture", "amd64"), ("os", "linux"))
    )
    return Pulled(desc, store.read_json(config_desc.digest))
