"""``layerforge.toml`` -> :class:`~layerforge.manifest.model.Project`: find the file, validate
its text against the schema (once: the result is cached) and build the project.

Every error is a :class:`ManifestError` naming the file, the dotted key and the fix.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import sys
import tomllib
from pathlib import Path
from typing import Any

from layerforge import __version__, cachedir
from layerforge.errors import ManifestError
from layerforge.manifest.messages import MANIFEST_NAME, translate
from layerforge.manifest.model import Project
from layerforge.manifest.parse import build_project


def find_manifest(start: Path) -> Path:
    """``start`` itself if it is a file, else ``start/layerforge.toml``."""
    path = start / MANIFEST_NAME if start.is_dir() else start
    if not path.is_file():
        raise ManifestError(
            f"{path} not found",
            hint="run `layerforge init` to create one, or pass --manifest PATH",
        )
    return path


def load(path: Path, cache_dir: Path | None = None) -> Project:
    """Parse and validate ``path``.

    With ``cache_dir``, the schema validation's result (a pure function of the TOML text and of
    the code that validates: see :func:`_code_fingerprint`) is remembered under
    ``cache_dir/manifest``, so that a build whose manifest did not change skips pydantic
    entirely. Everything that depends on other files
    (requirements files, source and context directories, OS sources) is checked on every load.
    """
    path = path.resolve()
    shown = str(path)
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise ManifestError(f"{path} not found", hint="run `layerforge init`") from None
    cached = _cache_file(cache_dir, text) if cache_dir is not None else None
    data = _read_cached(cached) if cached is not None else None
    if data is not None:
        try:
            return build_project(data, path)
        except (KeyError, IndexError, TypeError, AttributeError, ValueError):
            pass  # an entry of another shape (damaged, edited by hand): validate again
    data = _validate(text, shown)
    project = build_project(data, path)
    if cached is not None:  # only a manifest that is valid as a whole is remembered
        _write_cached(cached, data)
    return project


def _validate(text: bytes, shown: str) -> dict[str, Any]:
    """TOML text -> the manifest with every default filled in, as plain JSON data."""
    # The one import of the schema, here on purpose: pydantic takes a while to import, and a
    # cache hit (see load) never needs it. tests/unit/test_manifest_cache.py checks this.
    from pydantic import ValidationError  # noqa: PLC0415

    from layerforge.manifest.schema import ManifestModel, keys_at  # noqa: PLC0415

    try:
        raw = tomllib.loads(text.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"invalid TOML: {exc}", file=shown) from None
    try:
        model = ManifestModel.model_validate(raw)
    except ValidationError as exc:
        raise translate(exc, shown, keys_at) from None
    data: dict[str, Any] = model.model_dump(mode="json", by_alias=True)
    return data


# The code a validation runs, relative to the layerforge package: the manifest package, its
# schema and every layerforge module they import (a test checks this list against what
# importing them loads).
VALIDATION_MODULES = (
    "__init__.py",
    "cachedir.py",
    "errors.py",
    "fsutil.py",
    "manifest/__init__.py",
    "manifest/confine.py",
    "manifest/graph.py",
    "manifest/indexes.py",
    "manifest/loader.py",
    "manifest/messages.py",
    "manifest/model.py",
    "manifest/nonroot.py",
    "manifest/parse.py",
    "manifest/requirements.py",
    "manifest/runtime.py",
    "manifest/schema.py",
    "manifest/tags.py",
    "oci/__init__.py",
    "oci/reference.py",
    "sizes.py",
)


def _code_fingerprint() -> bytes:
    """A digest of everything that decides what a validation returns, besides the TOML text:
    the bytes of :data:`VALIDATION_MODULES`, pydantic's version file (found without importing
    pydantic, which a cache hit never does) and Python's version (tomllib). About 0.3 ms."""
    package = Path(__file__).parents[1]  # layerforge/, as VALIDATION_MODULES are named
    digest = hashlib.sha256(f"{__version__}\0{sys.version}\0".encode())
    for name in VALIDATION_MODULES:
        digest.update(name.encode() + b"\0" + _bytes_or_empty(package / name) + b"\0")
    spec = importlib.util.find_spec("pydantic")
    if spec is not None and spec.origin is not None:
        digest.update(_bytes_or_empty(Path(spec.origin).with_name("version.py")))
    return digest.digest()


def _bytes_or_empty(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:  # pragma: no cover - e.g. a zipped install: the version alone
        return b""


def _cache_file(cache_dir: Path, text: bytes) -> Path:
    digest = hashlib.sha256(_code_fingerprint() + b"\0" + text)
    return cachedir.MANIFESTS.path(cache_dir, f"{digest.hexdigest()}.json")


def cache_entry(cache_dir: Path, manifest: Path) -> Path | None:
    """The validation-cache file the manifest's current text maps to (None if unreadable)."""
    try:
        return _cache_file(cache_dir, manifest.read_bytes())
    except OSError:
        return None


def _read_cached(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_cached(path: Path, data: dict[str, Any]) -> None:
    """Best effort: a cache that cannot be written only costs the next run some time."""
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(data, sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
