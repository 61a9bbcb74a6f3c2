"""The local store: an OCI image layout directory (image-spec v1.1, image-layout.md).

``oci-layout``, ``index.json`` and ``blobs/sha256/<hex>``. Tags are
``org.opencontainers.image.ref.name`` annotations on the index's manifest descriptors,
written as ``NODE:TAG`` so that ``skopeo inspect oci:STORE:NODE:TAG`` finds them.

Writes are atomic: a blob is written to a temporary file in ``blobs/sha256/``,
verified against its digest, then renamed; ``index.json`` is replaced by rename.
A crash never leaves a blob under its final name with the wrong bytes.

A lock (:mod:`layerforge.oci.storelock`) keeps ``gc`` away from a store that a build, push or
verify is using.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from layerforge.errors import StoreError
from layerforge.fsutil import atomic_write, sha256_digest, temp_file
from layerforge.oci import storelock
from layerforge.oci.media import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    REF_NAME,
)

LAYOUT_VERSION = {"imageLayoutVersion": "1.0.0"}
LOCK_FILE = ("layerforge", "store.lock")
DOCUMENTS = (OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST)  # blobs that name others
LOCK_POLL = 0.25  # seconds between tries of a waiting exclusive lock


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: tuple[tuple[str, str], ...] = ()
    platform: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.platform:
            out["platform"] = dict(self.platform)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Descriptor:
        return cls(
            media_type=str(data["mediaType"]),
            digest=str(data["digest"]),
            size=int(data["size"]),
            annotations=tuple(
                sorted((str(k), str(v)) for k, v in data.get("annotations", {}).items())
            ),
            platform=tuple(sorted((str(k), str(v)) for k, v in data.get("platform", {}).items())),
        )

    def without_annotations(self) -> Descriptor:
        return Descriptor(self.media_type, self.digest, self.size, (), self.platform)

    @property
    def hex(self) -> str:
        return self.digest.split(":", 1)[1]


def canonical_json(value: object) -> bytes:
    """Compact, sorted JSON: the same value always gives the same bytes (and digest)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _check_digest(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or len(hexpart) != 64 or any(c not in "0123456789abcdef" for c in hexpart):
        raise StoreError(f"not a sha256 digest: {digest!r}")
    return hexpart


SYNC_EVERY = 64 << 20  # bytes between background fdatasyncs of a blob being written


DOCUMENT_LIMIT = 16 << 20  # manifests, configs, index.json (registries refuse manifests > 4 MiB)


def open_regular(path: Path) -> IO[bytes]:
    """``path`` opened for reading, only if it is a regular file.

    A layout someone else wrote may hold a fifo (a read that never returns), a symlink to
    ``/dev/zero`` (one that never ends) or a device where a blob should be: each is a
    StoreError at once. Raises FileNotFoundError for a missing file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise StoreError(
            f"{path} is not a regular file ({exc.strerror})",
            hint="an OCI layout holds its blobs and index.json as plain files",
        ) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise StoreError(
            f"{path} is not a regular file",
            hint="an OCI layout holds its blobs and index.json as plain files",
        )
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_bounded(path: Path, limit: int | None = DOCUMENT_LIMIT) -> bytes:
    """The bytes of the regular file ``path``; a StoreError past ``limit`` bytes (None: no
    limit)."""
    with open_regular(path) as fh:
        data = fh.read() if limit is None else fh.read(limit + 1)
    if limit is not None and len(data) > limit:
        raise StoreError(f"{path} is larger than {limit} bytes, too large for an OCI document")
    return data


def _quiet_fdatasync(fd: int) -> None:
    with contextlib.suppress(OSError):  # the file may be closed by an abort meanwhile
        os.fdatasync(fd)


class BlobWriter:
    """A temporary file in the store that becomes a blob on :meth:`commit`.

    Hashes while writing; ``commit`` renames the file under its digest (verifying
    ``expected`` if given). Dropped without commit, the temp file is removed.
    """

    def __init__(self, fileobj: IO[bytes], path: Path, store: Store, *, hashed: bool = True):
        self._file = fileobj
        self._path = path
        self._store = store
        self._hash = hashlib.sha256() if hashed else None
        self.size = 0
        self.committed: str | None = None
        self._synced = 0  # bytes handed to a background fdatasync so far
        self._sync: threading.Thread | None = None

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._hash is not None:
            self._hash.update(data)
        self.size += len(data)
        written = self._file.write(data)
        if self.size - self._synced >= SYNC_EVERY and not (self._sync and self._sync.is_alive()):
            self._background_sync()
        return written

    def _background_sync(self) -> None:
        """Start writing back what is written so far while the writer goes on, so that the
        fsync of :meth:`commit` has only the tail left (it was ~8% of a large layer write)."""
        self._file.flush()
        self._synced = self.size
        fd = self._file.fileno()
        self._sync = threading.Thread(target=_quiet_fdatasync, args=(fd,), daemon=True)
        self._sync.start()

    def flush(self) -> None:
        self._file.flush()

    def reset(self) -> None:
        """Discard everything written (a download that has to start over)."""
        if self._sync is not None:
            self._sync.join()
            self._sync = None
        self._file.seek(0)
        self._file.truncate()
        if self._hash is not None:
            self._hash = hashlib.sha256()
        self.size = 0
        self._synced = 0

    @property
    def digest(self) -> str:
        if self._hash is None:
            raise StoreError("this blob writer does not hash: commit it with its digest")
        return "sha256:" + self._hash.hexdigest()

    def commit(self, expected: str | None = None) -> str:
        """Verify and rename. A writer made with ``hashed=False`` (its caller hashes the
        very bytes it writes, e.g. the layer writer) trusts ``expected``."""
        if self._hash is None and expected is None:
            raise StoreError("a blob written without hashing needs its digest to commit")
        digest = self.digest if self._hash is not None else str(expected)
        if expected is not None and expected != digest:
            raise StoreError(f"blob digest mismatch: expected {expected}, wrote {digest}")
        self._file.flush()
        if self._sync is not None:
            self._sync.join()
        os.fsync(self._file.fileno())
        self._file.close()
        final = self._store.blob_path(digest)
        self._path.replace(final)
        self.committed = digest
        return digest


@dataclass
class Store:
    """An OCI image layout on disk. Thread-safe for concurrent blob writes and tagging."""

    root: Path
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def open(cls, root: Path, *, create: bool = True) -> Store:
        root = Path(root)
        layout = root / "oci-layout"
        if not layout.exists():
            if not create:
                raise StoreError(
                    f"{root} is not an OCI image layout (no oci-layout file)",
                    hint="run `layerforge build` first, or pass the right --store",
                )
            (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
            # a store is never committed: `git status` stays clean (layouts allow extra files)
            atomic_write(root / ".gitignore", b"*\n")
            atomic_write(layout, canonical_json(LAYOUT_VERSION))
            atomic_write(root / "index.json", _index_bytes([]))
        else:
            try:
                data = json.loads(layout.read_text())
            except (OSError, ValueError) as exc:
                raise StoreError(f"{layout} is unreadable: {exc}") from exc
            if data.get("imageLayoutVersion") != "1.0.0":
                raise StoreError(f"{layout}: unsupported imageLayoutVersion {data!r}")
            (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        return cls(root)

    # -- the store lock (layerforge.oci.storelock) ------------------------------------------
    def shared(self) -> contextlib.AbstractContextManager[None]:
        """Hold the store lock shared for the body (waits while a ``gc`` holds it)."""
        return storelock.shared(self.root)

    def exclusive(
        self, *, timeout: float | None = None, on_wait: Callable[[], None] | None = None
    ) -> contextlib.AbstractContextManager[None]:
        """Hold the store lock exclusively (see :func:`layerforge.oci.storelock.exclusive`)."""
        return storelock.exclusive(self.root, timeout=timeout, on_wait=on_wait)

    def image_problems(self, desc: Descriptor, *, layers: bool = True) -> list[str]:
        """What is missing from the image (manifest or index) ``desc`` names: absent blobs,
        or blobs whose size is not the descriptor's. Empty: every blob it reaches is there.
        ``layers=False``: absent layers are fine (a registry holds them), short ones are not."""
        problems: list[str] = []
        todo = [(desc, True)]
        while todo:
            current, needed = todo.pop()
            try:
                size = self.blob_path(current.digest).stat().st_size
            except FileNotFoundError:
                if needed:
                    problems.append(f"{current.digest} ({current.media_type}) is missing")
                continue
            if size != current.size:
                problems.append(f"{current.digest} has {size} bytes, not {current.size}")
            elif current.media_type in DOCUMENTS:
                doc = self.read_json(current.digest)
                todo += [(Descriptor.from_json(x), True) for x in doc.get("manifests", [])]
                if "config" in doc:
                    todo.append((Descriptor.from_json(doc["config"]), True))
                    todo += [(Descriptor.from_json(x), layers) for x in doc.get("layers", [])]
        return problems

    # -- blobs -------------------------------------------------------------------------
    def blob_path(self, digest: str) -> Path:
        return self.root / "blobs" / "sha256" / _check_digest(digest)

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    @contextlib.contextmanager
    def ingest(self, *, hashed: bool = True) -> Iterator[BlobWriter]:
        """Write a blob of unknown digest; call ``writer.commit()`` inside the block."""
        directory = self.root / "blobs" / "sha256"
        fd, name = temp_file(directory)
        path = Path(name)
        writer = BlobWriter(os.fdopen(fd, "wb", buffering=1 << 20), path, self, hashed=hashed)
        try:
            yield writer
        finally:
            if writer.committed is None:
                if writer._sync is not None:
                    writer._sync.join()
                with contextlib.suppress(OSError):
                    writer._file.close()
                path.unlink(missing_ok=True)

    def put_bytes(self, data: bytes) -> str:
        digest = sha256_digest(data)
        if not self.has_blob(digest):
            with self.ingest() as writer:
                writer.write(data)
                writer.commit(digest)
        return digest

    def read_bytes(self, digest: str, *, verify: bool = True, limit: int | None = None) -> bytes:
        """A blob's bytes, read only from a regular file; at most ``limit`` bytes (a
        StoreError past it), as for documents (:meth:`read_json`)."""
        try:
            data = read_bounded(self.blob_path(digest), limit)
        except FileNotFoundError:
            raise StoreError(
                f"blob {digest} is missing from {self.root}",
                hint="the store is incomplete; rebuild with `layerforge build`",
            ) from None
        if verify and sha256_digest(data) != digest:
            raise StoreError(f"blob {digest} in {self.root} is corrupt (content does not match)")
        return data

    def read_json(self, digest: str) -> dict[str, Any]:
        value = json.loads(self.read_bytes(digest, limit=DOCUMENT_LIMIT))
        if not isinstance(value, dict):
            raise StoreError(f"blob {digest} is not a JSON object")
        return value

    def blobs(self) -> set[str]:
        directory = self.root / "blobs" / "sha256"
        return {"sha256:" + p.name for p in directory.iterdir() if not p.name.startswith(".")}

    # -- index and tags -------------------------------------------------------------------
    def _read_index(self) -> list[dict[str, Any]]:
        try:
            data = json.loads(read_bounded(self.root / "index.json"))
        except FileNotFoundError:
            return []
        except ValueError as exc:
            raise StoreError(f"{self.root / 'index.json'} is not valid JSON: {exc}") from exc
        manifests = data.get("manifests", [])
        if not isinstance(manifests, list):
            raise StoreError(f"{self.root / 'index.json'}: 'manifests' is not a list")
        return manifests

    def tags(self) -> dict[str, Descriptor]:
        """ref name (``node:tag``) -> manifest descriptor (without the ref annotation)."""
        out: dict[str, Descriptor] = {}
        for entry in self._read_index():
            desc = Descriptor.from_json(entry)
            ref = dict(desc.annotations).get(REF_NAME)
            if ref:
                out[ref] = desc.without_annotations()
        return out

    def resolve(self, ref: str) -> Descriptor | None:
        return self.tags().get(ref)

    def tag(self, ref: str, desc: Descriptor) -> None:
        self.tag_many({ref: desc})

    def tag_many(self, refs: dict[str, Descriptor]) -> None:
        """Point each ref at its descriptor, replacing older entries, in one atomic write."""
        with self._lock:
            entries = [
                e for e in self._read_index() if e.get("annotations", {}).get(REF_NAME) not in refs
            ]
            for ref, desc in refs.items():
                annotated = Descriptor(
                    desc.media_type,
                    desc.digest,
                    desc.size,
                    tuple(sorted({**dict(desc.annotations), REF_NAME: ref}.items())),
                    desc.platform,
                )
                entries.append(annotated.to_json())
            entries.sort(key=lambda e: str(e.get("annotations", {}).get(REF_NAME, "")))
            atomic_write(self.root / "index.json", _index_bytes(entries))

    def untag(self, refs: list[str]) -> None:
        with self._lock:
            drop = set(refs)
            entries = [
                e for e in self._read_index() if e.get("annotations", {}).get(REF_NAME) not in drop
            ]
            atomic_write(self.root / "index.json", _index_bytes(entries))


def _index_bytes(manifests: list[dict[str, Any]]) -> bytes:
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
    return json.dumps(index, indent=2, sort_keys=True).encode() + b"\n"
