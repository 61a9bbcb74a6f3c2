"""Outdated pins: the newest release of each locked distribution on its index, read from the
index's PEP 691 JSON page (what uv reads; it works for named indexes too), with the date of
its first upload."""

from __future__ import annotations

import json
import posixpath
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from layerforge.errors import LayerforgeError

PEP691 = "application/vnd.pypi.simple.v1+json"
TIMEOUT = 20.0


class IndexUnavailable(LayerforgeError):
    """The index could not be asked (the audit's outdated section is then skipped)."""


@dataclass(frozen=True)
class Release:
    version: str
    uploaded: str  # the earliest upload-time of its files ("" when the index does not say)


def _version_of(filename: str) -> Version | None:
    try:
        if filename.endswith(".whl"):
            return parse_wheel_filename(filename)[1]
        return parse_sdist_filename(filename)[1]
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return None


def newest_release(page: dict[str, Any]) -> Release | None:
    """The newest final, not yanked release a PEP 691 project page lists."""
    releases: dict[Version, list[str]] = {}
    for file in page.get("files", []):
        if file.get("yanked"):
            continue
        version = _version_of(str(file.get("filename", "")))
        if version is None or version.is_prerelease or version.is_devrelease:
            continue
        releases.setdefault(version, []).append(str(file.get("upload-time") or ""))
    if not releases:
        return None
    newest = max(releases)
    times = sorted(t for t in releases[newest] if t)
    return Release(str(newest), times[0] if times else "")


def project_page(index: str, name: str) -> dict[str, Any]:
    url = urllib.parse.urljoin(index.rstrip("/") + "/", posixpath.join(name, ""))
    request = urllib.request.Request(url, headers={"Accept": PEP691})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as resp:  # noqa: S310
            value = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return {}
        raise IndexUnavailable(f"the index {index} could not be asked: {exc}") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise IndexUnavailable(f"the index {index} could not be asked: {exc}") from exc
    return value if isinstance(value, dict) else {}
