"""Named package indexes (``[[project.index]]``) and the distributions pinned to them
(``[project.sources]``), checked: unique names, at most one default, no credentials in a URL,
every source naming a declared index.

Credentials never appear in the manifest: uv reads them from ``UV_INDEX_<NAME>_USERNAME`` /
``_PASSWORD`` (:func:`credential_variables`) or from netrc, at lock and at build time.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from packaging.utils import InvalidName, canonicalize_name

from layerforge.errors import ManifestError
from layerforge.manifest.messages import did_you_mean
from layerforge.manifest.model import Index

CREDENTIALS_HINT = (
    "remove the credentials from the URL: set UV_INDEX_{VAR}_USERNAME and "
    "UV_INDEX_{VAR}_PASSWORD in the environment, or put the host in a netrc file ($NETRC)"
)


def env_name(name: str) -> str:
    """``name`` as uv spells it in its variables: upper-cased, other characters as '_'."""
    return re.sub(r"[^A-Z0-9]", "_", name.upper())


def credential_variables(name: str) -> tuple[str, str]:
    return f"UV_INDEX_{env_name(name)}_USERNAME", f"UV_INDEX_{env_name(name)}_PASSWORD"


def read_indexes(
    p: dict[str, Any], shown: str
) -> tuple[tuple[Index, ...], tuple[tuple[str, str], ...]]:
    """The validated ``[project]`` table's indexes and sources."""
    indexes: list[Index] = []
    seen: dict[str, str] = {}
    for i, raw in enumerate(p.get("index") or ()):
        key = f"project.index[{i}]"
        index = Index(raw["name"], raw["url"], raw["explicit"], raw["default"])
        _check_url(index, shown, f"{key}.url")
        other = seen.get(env_name(index.name))
        if other is not None:
            raise ManifestError(
                f"index name {index.name!r} is already used by another index ({other!r})"
                if other == index.name
                else f"index names {other!r} and {index.name!r} share uv's credential "
                f"variables {credential_variables(index.name)[0]}/_PASSWORD",
                file=shown,
                key=f"{key}.name",
                hint="give every [[project.index]] its own name",
            )
        seen[env_name(index.name)] = index.name
        indexes.append(index)
    defaults = [i for i in indexes if i.default]
    if len(defaults) > 1:
        raise ManifestError(
            f"indexes {defaults[0].name!r} and {defaults[1].name!r} both say default = true",
            file=shown,
            key="project.index",
            hint="at most one index is the default (the one used for everything else)",
        )
    if defaults and p.get("index_url"):
        raise ManifestError(
            f"index_url and the default index {defaults[0].name!r} both name the default index",
            file=shown,
            key="project.index_url",
            hint="remove index_url (it is the older spelling of default = true)",
        )
    return tuple(indexes), _sources(p.get("sources") or {}, indexes, shown)


def _check_url(index: Index, shown: str, key: str) -> None:
    parts = urlsplit(index.url)
    if parts.scheme not in ("http", "https", "file") or not (parts.netloc or parts.path):
        raise ManifestError(
            f"{index.url!r} is not an index URL",
            file=shown,
            key=key,
            hint="write the simple index's URL, e.g. 'https://download.example/whl/cu128'",
        )
    if "@" in parts.netloc:
        raise ManifestError(
            "the index URL carries credentials (user:password@); they would be written into "
            "the lock and the logs",
            file=shown,
            key=key,
            hint=CREDENTIALS_HINT.format(VAR=env_name(index.name)),
        )


def _sources(raw: dict[str, str], indexes: list[Index], shown: str) -> tuple[tuple[str, str], ...]:
    names = [i.name for i in indexes]
    out: dict[str, str] = {}
    for dist, index in raw.items():
        key = f"project.sources.{dist}"
        try:
            name = canonicalize_name(dist, validate=True)
        except InvalidName:
            raise ManifestError(
                f"{dist!r} is not a distribution name",
                file=shown,
                key=key,
                hint="write the name as in a requirement, e.g. torch = 'pytorch-cu128'",
            ) from None
        if index not in names:
            raise ManifestError(
                f"no index named {index!r}{did_you_mean(index, names)}",
                file=shown,
                key=key,
                hint=f"declare it as [[project.index]] name = {index!r}, url = '...'"
                if not names
                else f"indexes declared: {', '.join(names)}",
            )
        if name in out and out[name] != index:
            raise ManifestError(
                f"{dist!r} is pinned to two indexes ({out[name]!r} and {index!r})",
                file=shown,
                key=key,
                hint="pin each distribution to one index",
            )
        out[name] = index
    return tuple(sorted(out.items()))
