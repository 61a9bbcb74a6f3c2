"""Push images from the local store to a registry.

Per blob: HEAD (skip what the registry has), then a cross-repository mount from a
repository known to hold it (``POST ?mount=&from=``), else POST + one streamed PATCH (201
or 202 accepted) + PUT ``?digest=``. With a chunk size (``PushSession.chunk``), or once a
registry or a front server answers a PATCH with 413 (its request body limit: the chunk is
halved, from at most 32 MiB down to 1 MiB), the blob goes in PATCHes of at most that size,
each with ``Content-Range``; each starts where the registry's ``Range`` says it stands.
The manifest goes last, once per tag, with its exact bytes and ``Content-Type`` = its media
type. Interrupted pushes resume: a rerun skips every blob that made it.

Faults inside one run are survived: after a broken PATCH or PUT the blob is asked for
(``HEAD``: the closing PUT may have gone through), then the session (``GET``, ``Range:
0-N``) and the rest is sent with ``Content-Range``; a session the registry refuses
(``BLOB_UPLOAD_INVALID``/``UNKNOWN``, ``DIGEST_INVALID``) is replaced by a fresh one. The
rounds are bounded and the final message names the blob, the repository and what broke.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

from layerforge.errors import ConnectionFault, RegistryError, StoreError
from layerforge.events import Event, NullReporter, Reporter
from layerforge.fsutil import sha256_digest
from layerforge.oci.artifact import Artifact, fallback_tag, merged_index
from layerforge.oci.layout import DOCUMENT_LIMIT, Descriptor, Store, canonical_json
from layerforge.oci.media import OCI_INDEX
from layerforge.oci.pull import head_manifest
from layerforge.oci.registry import Body, Client, Response, check
from layerforge.sizes import format_size

BlobOutcome = Literal["present", "mounted", "uploaded"]


@dataclass
class PushSession:
    """Remembers which repository holds which blob, for mounts between the fleet's repos."""

    client: Client
    registry: str  # as users name it (for messages)
    reporter: Reporter = field(default_factory=NullReporter)
    jobs: int = 3
    holders: dict[str, str] = field(default_factory=dict)  # digest -> repository
    chunk: int | None = None  # bytes per PATCH; None: one PATCH per blob (until a 413)


@dataclass(frozen=True)
class PushResult:
    repository: str
    digest: str
    tags: tuple[str, ...]
    uploaded_bytes: int
    blobs: dict[str, BlobOutcome]
    referrers: tuple[ReferrerResult, ...] = ()  # artifacts pushed with it (its SBOM)

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


def _start(session: PushSession, repo: str, digest: str, *, mount: bool = True) -> tuple[bool, str]:
    """(mounted, upload location)."""
    source = session.holders.get(digest) if mount else None
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


UPLOAD_ATTEMPTS = 5  # PATCH/PUT rounds per blob (each resumed or in a fresh session)
# the registry no longer knows the session, or rejects what it holds: start a new one
_FRESH_CODES = frozenset({"BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN", "DIGEST_INVALID"})


MIN_CHUNK = 1 << 20  # the smallest chunk (the 413 fallback stops halving here)
FALLBACK_CHUNK = 32 << 20  # the first chunk size after a whole blob's PATCH got a 413


@dataclass
class _Upload:
    """Where one blob's upload session stands: its latest location (each answer's
    ``_state`` goes on in the next request), and the chunk size (a 413 makes it smaller)."""

    location: str
    chunk: int | None


class _TooLarge(Exception):
    """The registry (or a server in front of it) refused a PATCH body as too large (413)."""

    def __init__(self, sent: int) -> None:
        super().__init__(sent)
        self.sent = sent


class _Refused(Exception):
    """The registry refused an upload session's PATCH or PUT (``fresh``: start anew)."""

    def __init__(self, reason: str, *, fresh: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fresh = fresh


def upload(session: PushSession, store: Store, repo: str, desc: Descriptor) -> BlobOutcome:
    """One blob into ``repo``: present, mounted, or uploaded (surviving faults)."""
    try:
        return _upload(session, store, repo, desc)
    except ConnectionFault as exc:  # a step around the transfer that kept breaking
        raise exc.reworded(
            f"registry {session.registry}: upload of blob {desc.digest} ({desc.size} bytes) to "
            f"{repo} failed: {exc.method} {exc.target} broke {exc.attempts} times: {exc.cause}"
        ) from None


def _upload(session: PushSession, store: Store, repo: str, desc: Descriptor) -> BlobOutcome:
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
    _send(session, store, repo, desc, location, task)
    rep.emit(Event("finish", task, data={"ok": True, "bytes": desc.size, "digest": desc.digest}))
    return "uploaded"


def _send(
    session: PushSession, store: Store, repo: str, desc: Descriptor, location: str, task: str
) -> None:
    """PATCH from ``offset`` and PUT, resuming after a fault from the offset the session
    reports, or in a fresh session when the registry no longer accepts this one."""
    offset = 0
    fault: ConnectionFault | None = None
    reason = ""
    up = _Upload(location, session.chunk)
    for attempt in range(1, UPLOAD_ATTEMPTS + 1):
        try:
            offset = _patch_all(session, store, repo, desc, offset, task, up)
            if offset >= desc.size:
                _close(session, repo, desc, up.location)
        except ConnectionFault as exc:
            fault, fresh, reason = exc, False, f"{exc.cause} during {exc.method}"
        except _Refused as exc:
            fault, fresh, reason = None, exc.fresh, exc.reason
        else:
            if offset >= desc.size:
                return
            # the registry took fewer bytes than were sent: send the rest
            reason = f"the registry held {offset} of {desc.size} bytes after a PATCH"
            continue
        if attempt == UPLOAD_ATTEMPTS:
            break
        session.client.sleep(min(0.5 * 2**attempt, 8.0))
        if has_blob(session, repo, desc.digest):
            return  # the closing PUT went through; its answer was lost
        resumed = None if fresh else _status(session, repo, up.location)
        if resumed is None:
            offset, up.location = 0, _start(session, repo, desc.digest, mount=False)[1]
        else:
            offset, up.location = resumed
    raise RegistryError(
        f"registry {session.registry}: upload of blob {desc.digest} ({desc.size} bytes) to "
        f"{repo} failed after {UPLOAD_ATTEMPTS} attempts; the last one: {reason}",
        hint=fault.hint
        if fault is not None
        else "retry later; if it persists, the registry "
        "refuses this blob's uploads (check its logs)",
    )


def _patch_all(
    session: PushSession,
    store: Store,
    repo: str,
    desc: Descriptor,
    offset: int,
    task: str,
    up: _Upload,
) -> int:
    """PATCH chunk after chunk from ``offset`` while the registry takes bytes; returns the
    bytes the registry holds. A 413 makes the chunks smaller and sends again."""
    while True:
        try:
            up.location, held = _patch(session, store, repo, desc, up.location, offset, task,
                                       up.chunk)  # fmt: skip
        except _TooLarge as exc:
            up.chunk = _smaller(session, repo, desc, task, exc.sent)
            continue
        if held >= desc.size or held <= offset:
            return held
        offset = held  # the next chunk starts where the registry says it stands


def _smaller(session: PushSession, repo: str, desc: Descriptor, task: str, sent: int) -> int:
    """The chunk size after a PATCH of ``sent`` bytes was refused as too large."""
    if sent <= MIN_CHUNK:
        raise RegistryError(
            f"registry {session.registry}: a PATCH of {format_size(sent)} of blob "
            f"{desc.digest} to {repo} was refused as too large (HTTP 413), even in chunks of "
            f"{format_size(MIN_CHUNK)}",
            hint="a proxy or front server in front of the registry limits request bodies: "
            "raise its limit (nginx: client_max_body_size) to a few MiB",
        )
    smaller = max(MIN_CHUNK, min(FALLBACK_CHUNK, sent // 2))
    session.reporter.emit(
        Event("warning", task, f"{repo}: a PATCH of {format_size(sent)} was refused as too "
              f"large (HTTP 413); sending chunks of {format_size(smaller)}")
    )  # fmt: skip
    return smaller


def _patch(
    session: PushSession,
    store: Store,
    repo: str,
    desc: Descriptor,
    location: str,
    offset: int,
    task: str,
    chunk: int | None = None,
) -> tuple[str, int]:
    """Send the blob from ``offset`` (at most ``chunk`` bytes of it); (next location, bytes
    the registry holds)."""
    if offset >= desc.size and desc.size:
        return location, offset
    rep = session.reporter
    stop = min(desc.size, offset + chunk) if chunk else desc.size
    body = Body(
        path=store.blob_path(desc.digest),
        progress=lambda n: rep.emit(Event("progress", task, done=n, total=desc.size)),
        offset=offset,
        end=stop,
    )
    headers = {"Content-Type": "application/octet-stream"}
    if stop > offset and (offset or stop < desc.size):
        headers["Content-Range"] = f"{offset}-{stop - 1}"
    resp = session.client.request(
        "PATCH", location, headers=headers, body=body, scope=_scope(repo), retry_faults=False
    )
    if resp.status == 413:
        raise _TooLarge(stop - offset)
    _refused(resp, "PATCH")
    check(resp, session.registry, repo, "push to")
    location = _location(resp, session, repo) if resp.header("Location") else location
    held = _range_end(resp.header("Range"))
    if not desc.size:
        return location, desc.size
    if held is None:
        return location, stop
    # "0-0" is also what an empty session says; after sending bytes it means one is held
    return location, max(held, 1)


def _close(session: PushSession, repo: str, desc: Descriptor, location: str) -> None:
    resp = session.client.request(
        "PUT", _with_query(location, digest=desc.digest), scope=_scope(repo), retry_faults=False
    )
    _refused(resp, "PUT")
    check(resp, session.registry, repo, "push to")


def _refused(resp: Response, method: str) -> None:
    """Raise _Refused for the answers that end (or rewind) an upload session."""
    if resp.status not in (400, 404, 416):
        return
    codes = _error_codes(resp)
    if resp.status == 416:
        raise _Refused(f"the registry refused the range of a resumed {method} (HTTP 416)",
                       fresh=False)  # fmt: skip
    if codes & _FRESH_CODES:
        what = ", ".join(sorted(codes & _FRESH_CODES))
        raise _Refused(f"the registry answered {method} with HTTP {resp.status} {what}", fresh=True)


def _error_codes(resp: Response) -> set[str]:
    try:
        errors = resp.json().get("errors")
    except ValueError:
        return set()
    if not isinstance(errors, list):
        return set()
    return {str(e.get("code")) for e in errors if isinstance(e, dict)}


def _range_end(value: str) -> int | None:
    """``Range: 0-N`` of an upload session -> N + 1 bytes held (None: no usable header)."""
    first, sep, last = value.strip().removeprefix("bytes=").partition("-")
    if not sep or not first.isdigit() or not last.isdigit():
        return None
    return int(last) + 1 if int(last) > 0 else 0


def _status(session: PushSession, repo: str, location: str) -> tuple[int, str] | None:
    """(bytes held, location) of an upload session; None when it is gone."""
    resp = session.client.request("GET", location, scope=_scope(repo))
    if resp.status != 204:
        return None
    held = _range_end(resp.header("Range"))
    where = _location(resp, session, repo) if resp.header("Location") else location
    return (held or 0), where


def _tag_digest(session: PushSession, repo: str, tag: str) -> str | None:
    """The digest ``repo:tag`` points at in the registry (None: no such tag, or not said)."""
    found = head_manifest(
        session.client, session.registry, repo, tag, scope=_scope(repo), action="push to"
    )
    return found or None


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
        raw = store.read_bytes(manifest.digest, limit=DOCUMENT_LIMIT)
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
    return head_manifest(client, registry, repo, tag) is not None


# -- referrers (artifacts with a subject, such as SBOMs) ------------------------------------

ReferrerRoute = Literal["referrers", "tag-schema"]


@dataclass(frozen=True)
class ReferrerResult:
    repository: str
    digest: str  # the artifact manifest's
    subject: str
    route: ReferrerRoute  # how a client finds it: the referrers API, or the fallback tag
    uploaded_bytes: int


def push_referrer(
    session: PushSession, store: Store, artifact: Artifact, repo: str
) -> ReferrerResult:
    """Push an artifact manifest (blobs, then the manifest by digest) and make it findable.

    A registry with the referrers API (it answers the manifest PUT with ``OCI-Subject``, or
    ``GET /v2/REPO/referrers/SUBJECT`` with 200) lists it by itself. Otherwise the
    distribution-spec's tag schema: the index under ``sha256-<hex of the subject>`` gets
    the artifact's descriptor added (kept as it is when it already lists it)."""
    doc = store.read_json(artifact.manifest.digest)
    blobs = [Descriptor.from_json(x) for x in [doc["config"], *doc.get("layers", [])]]
    outcomes = [upload(session, store, repo, b) for b in blobs]
    raw = store.read_bytes(artifact.manifest.digest, limit=DOCUMENT_LIMIT)
    resp = session.client.request(
        "PUT",
        f"/v2/{repo}/manifests/{artifact.manifest.digest}",
        headers={"Content-Type": artifact.manifest.media_type},
        body=Body(raw),
        scope=_scope(repo),
    )
    check(resp, session.registry, repo, "push to")
    uploaded = sum(b.size for b, o in zip(blobs, outcomes, strict=True) if o == "uploaded")
    route: ReferrerRoute = "referrers"
    if not resp.header("OCI-Subject") and not _has_referrers_api(session, repo, artifact.subject):
        route = "tag-schema"
        _add_to_fallback_index(session, repo, artifact)
    return ReferrerResult(repo, artifact.manifest.digest, artifact.subject, route, uploaded)


def _has_referrers_api(session: PushSession, repo: str, subject: str) -> bool:
    resp = session.client.request(
        "GET",
        f"/v2/{repo}/referrers/{subject}",
        headers={"Accept": OCI_INDEX},
        scope=_scope(repo),
    )
    return resp.status == 200 and resp.header("Content-Type").startswith(OCI_INDEX)


def _add_to_fallback_index(session: PushSession, repo: str, artifact: Artifact) -> None:
    tag = fallback_tag(artifact.subject)
    resp = session.client.request(
        "GET",
        f"/v2/{repo}/manifests/{tag}",
        headers={"Accept": OCI_INDEX},
        scope=_scope(repo),
    )
    existing: dict[str, Any] | None = None
    if resp.status != 404:
        check(resp, session.registry, repo, "push to")
        existing = resp.json()
    index = merged_index(existing, artifact.index_entry())
    if index is None:
        return
    raw = canonical_json(index)
    _put_manifest(session, repo, tag, raw, OCI_INDEX, sha256_digest(raw))
