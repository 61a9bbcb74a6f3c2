"""How often a distribution releases: the final versions its index published in the last 365
days (the ``upload-time`` of PEP 691 JSON pages, PEP 700), per month, counting only what the
node's requirement admits (an exact pin: none). A layer holding distributions that release
often is rebuilt, re-pushed and re-pulled often: docs/suggest.md has the model."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from packaging.specifiers import SpecifierSet
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import Version

from layerforge import cachedir
from layerforge.fsutil import atomic_write

JSON_ACCEPT = "application/vnd.pypi.simple.v1+json"
WINDOW = timedelta(days=365)


def _version(filename: str) -> Version | None:
    try:
        if filename.endswith(".whl"):
            return parse_wheel_filename(filename)[1]
        return parse_sdist_filename(filename)[1]
    except (InvalidWheelFilename, InvalidSdistFilename):
        return None


def _time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def release_times(page: dict[str, object]) -> dict[Version, datetime]:
    """Each version of a PEP 691 project page and its first upload time."""
    out: dict[Version, datetime] = {}
    files = page.get("files")
    for item in files if isinstance(files, list) else []:
        if not isinstance(item, dict):
            continue
        version = _version(str(item.get("filename", "")))
        when = _time(item.get("upload-time"))
        if version is None or when is None:
            continue
        if version not in out or when < out[version]:
            out[version] = when
    return out


def monthly_rate(
    times: dict[Version, datetime], specifier: SpecifierSet | None, now: datetime
) -> float:
    """Final releases a month over the last year that ``specifier`` admits; 0 for a pin."""
    if specifier is not None and any(
        s.operator in ("==", "===") and "*" not in s.version for s in specifier
    ):
        return 0.0
    count = sum(
        1
        for version, when in times.items()
        if not version.is_prerelease
        and not version.is_devrelease
        and now - when <= WINDOW
        and (specifier is None or specifier.contains(version))
    )
    return count / 12


CACHE_SECONDS = 86400.0  # release dates are read again after a day


def fetch_page(
    index: str, name: str, cache_dir: Path | None = None, timeout: float = 10.0
) -> dict[str, object] | None:
    """The PEP 691 JSON page of ``name`` on ``index`` (from the cache when it is less than a
    day old); None when the index does not answer with one (HTML only, a network error)."""
    entry = None
    if cache_dir is not None:
        key = hashlib.sha256(f"{index}\n{name}".encode()).hexdigest()[:32]
        entry = cachedir.RELEASES.path(cache_dir, f"{key}.json")
        with contextlib.suppress(OSError, ValueError):
            if time.time() - entry.stat().st_mtime < CACHE_SECONDS:
                cached = json.loads(entry.read_text())
                if isinstance(cached, dict):
                    return cached
    page = _download(index, name, timeout)
    if page is not None and entry is not None:
        with contextlib.suppress(OSError):
            entry.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(entry, json.dumps(page).encode())
    return page


def _download(index: str, name: str, timeout: float) -> dict[str, object] | None:
    url = f"{index.rstrip('/')}/{name}/"
    request = urllib.request.Request(url, headers={"Accept": JSON_ACCEPT})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            data = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def rates(
    index: str,
    wanted: Iterable[tuple[str, SpecifierSet | None]],
    now: datetime | None = None,
    cache_dir: Path | None = None,
) -> dict[str, float | None]:
    """name -> releases a month (None: unknown), for each (name, specifier)."""
    now = now or datetime.now(UTC)
    out: dict[str, float | None] = {}
    for name, specifier in wanted:
        page = fetch_page(index, name, cache_dir)
        out[name] = None if page is None else monthly_rate(release_times(page), specifier, now)
    return out


def change_probability(rates_: Iterable[float]) -> float:
    """The chance that a layer changes in a month, its distributions releasing as Poisson
    processes (each release a new version under a monthly ``lock --upgrade``)."""
    return 1 - math.exp(-sum(rates_))
