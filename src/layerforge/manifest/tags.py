"""Tag templates and repositories per node (``tags = ["docker-ml-{version}"]``,
``repository = "fks"``): checked when the manifest is read, expanded when pushing."""

from __future__ import annotations

import re
import string
from collections.abc import Mapping

FIELDS = ("version", "commit", "key", "node", "project")
TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")  # the OCI distribution spec's
REPOSITORY = re.compile(
    r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
)


def check_template(template: str) -> None:
    """A ValueError unless ``template`` names only known fields and expands to a valid tag."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"tag template {template!r}: {exc}") from None
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in FIELDS or spec or conversion:
            raise ValueError(
                f"tag template {template!r}: unknown placeholder {{{name}}} "
                f"(use {', '.join('{' + f + '}' for f in FIELDS)})"
            )
    sample = expand(template, dict.fromkeys(FIELDS, "x"))
    if sample is None or not TAG.match(sample):
        raise ValueError(
            f"tag template {template!r} does not give a valid tag (not a valid tag: letters, "
            "digits, '_', '.', '-', at most 128, not starting with '.' or '-')"
        )


def expand(template: str, values: Mapping[str, str | None]) -> str | None:
    """``template`` with its placeholders filled; None when one of them has no value (e.g.
    ``{commit}`` outside a clean checkout)."""
    names = [name for _, name, _, _ in string.Formatter().parse(template) if name]
    if any(not values.get(name) for name in names):
        return None
    return template.format_map(dict(values))


def check_repository(repository: str) -> None:
    if not REPOSITORY.match(repository):
        raise ValueError(
            f"{repository!r} is not a valid repository name (lowercase letters, digits and "
            "'.', '_', '-' separators, path components joined by '/')"
        )
