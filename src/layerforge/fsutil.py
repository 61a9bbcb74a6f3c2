"""Files and digests: atomic writes, temporary files, and the one canonical-JSON digest.

Leaf module (standard library only). Every content key layerforge computes goes through
:func:`digest_json`, so the encoding that keys depend on is written once.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from pathlib import Path


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def digest_json(value: object) -> str:
    """``sha256:<hex>`` of ``value`` as compact JSON with sorted keys and ASCII escapes.

    The key documents of plan (node inputs), lock (lock inputs, runtime groups), the layer
    cache and source trees are hashed this way; changing a byte of this encoding changes every
    content key, so it never changes. (OCI documents are serialized differently, without
    ASCII escapes: :func:`layerforge.oci.layout.canonical_json`.)
    """
    return sha256_digest(json.dumps(value, sort_keys=True, separators=(",", ":")).encode())


def temp_file(directory: Path, suffix: str = "") -> tuple[int, str]:
    """A new ``.tmp-*`` file in ``directory``, open for writing: (fd, path).

    Unlike ``tempfile.mkstemp`` (always 0600), the file gets the mode an ordinary file gets
    (0666 less the umask): blobs, indexes, locks and archives must be readable by the other
    users and tools (rootless podman, CI, teammates) that read a store.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    while True:
        name = str(directory / f".tmp-{secrets.token_hex(8)}{suffix}")
        try:
            return os.open(name, flags, 0o666), name
        except FileExistsError:  # pragma: no cover - 64 random bits
            continue


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``path`` so that readers see the old or the new content, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = temp_file(path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        Path(name).replace(path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
