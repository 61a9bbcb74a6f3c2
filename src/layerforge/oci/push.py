"""Push images from the local store to a registry.

Per blob: HEAD (skip what the registry has), then a cross-repository mount from a
repository known to hold it (``POST ?mount=&from=``), else POST + one streamed PATCH (201
or 202 accepted) + PUT ``?digest=``. The manifest goes last, once per tag, with its exact
bytes and ``Content-Type`` = its media type. Interrupted pushes resume: a rerun skips every
blob that made it.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Literal

from layerforge.errors import RegistryError, StoreError
from layerforge.events import Event, NullReporter, Reporter
from layerforge.oci.layout import Descriptor, Store
from layerforge.oci.registry import Body, Client, Response, check

BlobOutcome = Literal["present", "mounted", "uploaded"]


@dataclass
class PushSession:
    """Remembers which repository holds which blob, for mounts between the fleet's repos."""

    client: Client
    registry: str  # as users name it (for messages)
    reporter: Reporter = field(default_factory=NullReporter)
    jobs: int = 3
    holders: dict[str, str] = field(default_factory=dict)  # digest -> repository


@dataclass(frozen=True)
class PushResult:
    repository: str
    digest: str
    tags: tuple[str, ...]
    uploaded_bytes: int
    blobs: dict[str, BlobOutcome]

    def count(self, outcome: BlobOutcome) -> int:
        return sum(1 for v in self.blobs.values() if v == outcome)


def _scope(repo: str, source: str | None = None) -> str:
    scope = f"repository:{repo}:pull,push"
    return f"{scope} repository:{source}:pull" if source else scope


def has_blob(session: PushSession, repo: str, digest: str) -> bool:
    resp = session.client.request("HEAD", f"/v2/{repo}/blobs/{digest}", scope=_scope(repo))
    if resp.status == 404:
        return False
    check(resp, session.registry, repo, "push to")
    return True


def _location(resp: Response, session: PushSession, repo: str) -> str:
    location = resp.header("Location")
    if not location:
        raise RegistryError(f"registry {session.registry}: upload to {repo} gave no Location")
    return urllib.parse.urljoin(resp.url, location)


def _start(session: PushSession, repo: str, digest: str) -> tuple[bool, str]:
    """(mounted, upload location)."""
    source = session.holders.get(digest)
    path = f"/v2/{repo}/blobs/uploads/"
    if source and source != repo:
        query = urllib.parse.urlencode({"mount": digest, "from": source})
        resp = session.client.request("POST", f"{path}?{query}", scope=_scope(repo, source))
        if resp.status == 201:
            return True, ""
        if resp.status == 202:
            return False, _location(resp, session, repo)
    resp = session.client.request("POST", path, scope=_scope(repo))
    check(resp, session.registry, repo, "push to")
    return False, _location(resp, session, repo)


def _with_query(location: str, **params: str) -> str:
    sep = "&" if urllib.parse.urlsplit(location).query else "?"
    return location + sep + urllib.parse.urlencode(params)


def upload(session: PushSession, store: Store, repo: str, desc: Descriptor) -> BlobOutcome:
    if has_blob(session, repo, desc.digest):
        return "present"
    if not store.has_blob(desc.digest):
        raise StoreError(
            f"blob {desc.digest} of {repo} is not in {store.root} and not in the registry",
            hint="the image came from another registry's cache: rebuild it with "
            "`layerforge build --no-remote-cache`",
        )
    mounted, location = _start(session, repo, desc.digest)
    if mounted:
        return "mounted"
    task = f"push:{repo}@{desc.digest[7:19]}"
    rep = session.reporter
    rep.emit(Event("start", task, f"{repo} {desc.digest[7:19]}", total=desc.size))
    body = Body(
        path=store.blob_path(desc.digest),
        progress=lambda n: rep.emit(Event("progress", task, done=n, total=desc.size)),
    )
    headers = {"Content-Type": "application/octet-stream"}
    resp = session.client.request("PATCH", location, headers=headers, body=body, scope=_scope(repo))
    check(resp, session.registry, repo, "push to")
    location = _location(resp, session, repo) if resp.header("Location") else location
    resp = session.client.request(
        "PUT", _with_query(location, digest=desc.digest), scope=_scope(repo)
    )
    check(resp, session.registry, repo, "push to")
    rep.emit(Event("finish", task, data={"ok": True, "bytes": desc.size, "digest": desc.digest}))
    return "uploaded"


def _tag_digest(session: PushSession, repo: str, tag: str) -> str | None:
    """The digest ``repo:tag`` points at in the registry (None: no such tag)."""
    from layerforge.oci.pull import ACCEPT  # noqa: PLC0415

    resp = session.client.request(
        "HEAD", f"/v2/{repo}/manifests/{tag}", headers={"Accept": ACCEPT}, scope=_scope(repo)
    )
    if resp.status == 404:
        return None
    check(resp, session.registry, repo, "push to")
    return resp.header("Docker-Content-Digest") or None


def _put_manifest(
    session: PushSession, repo: str, tag: str, raw: bytes, media_type: str, digest: str
) -> None:
    resp = session.client.request(
        "PUT",
        f"/v2/{repo}/manifests/{tag}",
        headers={"Content-Type": media_type},
        body=Body(raw),
        scope=_scope(repo),
    )
    check(resp, session.registry, repo, "push to")
    returned = resp.header("Docker-Content-Digest")
    if returned and returned != digest:
        raise RegistryError(
            f"registry {session.registry}: {repo}:{tag} stored as {returned}, expected {digest}",
            hint="the registry rewrote the manifest; use a registry that keeps OCI bytes",
        )


def push_image(
    session: PushSession, store: Store, manifest: Descriptor, repo: str, tags: Iterable[str]
) -> PushResult:
    """Blobs (in parallel), then the manifest under each tag that does not point at it yet.

    A manifest is only accepted once all its blobs are in, so when every tag already points
    at this digest there is nothing to upload and the blobs are not even asked about."""
    doc = store.read_json(manifest.digest)
    blobs = [Descriptor.from_json(x) for x in [*doc.get("layers", []), doc["config"]]]
    unique = list({b.digest: b for b in blobs}.values())
    tag_list = tuple(dict.fromkeys(tags))
    with ThreadPoolExecutor(max_workers=max(1, session.jobs)) as pool:
        current = list(pool.map(lambda t: _tag_digest(session, repo, t), tag_list))
        missing = [t for t, d in zip(tag_list, current, strict=True) if d != manifest.digest]
        outcomes: list[BlobOutcome] = ["present"] * len(unique)
        if missing:
            outcomes = list(pool.map(lambda d: upload(session, store, repo, d), unique))
        raw = store.read_bytes(manifest.digest)
        media_type = str(doc.get("mediaType") or manifest.media_type)
        put = partial(_put_manifest, session, repo, raw=raw, media_type=media_type)
        list(pool.map(lambda t: put(tag=t, digest=manifest.digest), missing))
    for blob in unique:
        session.holders[blob.digest] = repo
    uploaded = sum(b.size for b, o in zip(unique, outcomes, strict=True) if o == "uploaded")
    return PushResult(
        repo,
        manifest.digest,
        tag_list,
        uploaded,
        {b.digest: o for b, o in zip(unique, outcomes, strict=True)},
    )


def manifest_exists(client: Client, registry: str, repo: str, tag: str) -> bool:
    from layerforge.oci.pull import ACCEPT  # noqa: PLC0415

    resp = client.request(
        "HEAD",
        f"/v2/{repo}/manifests/{tag}",
        headers={"Accept": ACCEPT},
        scope=f"repository:{repo}:pull",
    )
    if resp.status == 404:
        return False
    check(resp, registry, repo, "pull from")
    return True
