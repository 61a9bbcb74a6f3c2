"""What a user reads about a bad manifest: pydantic's errors translated into a
:class:`ManifestError` naming the dotted key and the fix, and "did you mean" suggestions.

This module imports neither pydantic nor the schema: the caller that validated passes the
schema's :func:`~layerforge.manifest.schema.keys_at` along with the error.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from layerforge.errors import ManifestError

if TYPE_CHECKING:
    from pydantic import ValidationError

MANIFEST_NAME = "layerforge.toml"


def did_you_mean(word: str, choices: object) -> str:
    options = [str(c) for c in choices]  # type: ignore[attr-defined]
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


# pydantic's names for the member of a union a value was tried as: not part of the key
_UNION_MEMBERS = ("str", "DebootstrapModel", "RuntimeGroupModel", "tuple[str,...]", "int",
                  "list", "UserModel", "HealthcheckModel", "bool")  # fmt: skip


def translate(
    exc: ValidationError, shown: str, keys_at: Callable[[list[str]], list[str]]
) -> ManifestError:
    """``exc`` as one ManifestError; ``keys_at(loc)``: the keys allowed beside ``loc``."""
    errors = exc.errors()
    # A value that fits no member of a union (`from`: a name or a debootstrap table) gets one
    # error per member: the one that went deepest is about what the user meant.
    parent = errors[0]["loc"][:-1]
    err = max((e for e in errors if e["loc"][: len(parent)] == parent), key=lambda e: len(e["loc"]))
    loc = [str(p) for p in err["loc"] if not str(p).startswith(("function-", "tagged-union"))]
    loc = [p for p in loc if p not in _UNION_MEMBERS]
    key = ".".join(loc)
    if err["type"] == "extra_forbidden":
        return _unknown_key(loc, shown, keys_at(loc))
    if err["type"] == "missing":
        required = _required_hint(loc, shown)
        return ManifestError("this key is required", file=shown, key=key, hint=required)
    message, hint = _explain(err, loc)
    return ManifestError(message, file=shown, key=key, hint=hint)


def _explain(err: Any, loc: list[str]) -> tuple[str, str | None]:
    """The message and hint for a value of the wrong shape."""
    kind, value = err["type"], err.get("input")
    if kind == "string_pattern_mismatch" and loc == ["project", "python"]:
        return (
            f"python must be MAJOR.MINOR, not {value!r}",
            "e.g. python = '3.11' (the patch release is whatever the OS source ships)",
        )
    if loc == ["project", "source_date_epoch"] and kind in (
        "less_than_equal",
        "greater_than_equal",
    ):
        return (
            f"{value!r} is not a time an image can record (0 to 253402300799, the end of 9999)",
            "write a Unix time in seconds, e.g. the last commit's: git log -1 --format=%ct",
        )
    if kind == "tuple_type":
        return f"expected a list, not {_toml_kind(value)}", _list_hint(value, loc)
    if kind == "literal_error":
        return f"{value!r} is not one of the allowed values", (
            f"write {err.get('ctx', {}).get('expected', 'one of the documented values')}"
        )
    return str(err["msg"]).removeprefix("Value error, "), _type_hint(kind)


def _toml_kind(value: object) -> str:
    if isinstance(value, str):
        return f"the string {value!r}"
    return {bool: "a boolean", int: "a number", float: "a number", dict: "a table"}.get(
        type(value), "this value"
    )


def _list_hint(value: object, loc: list[str]) -> str:
    """A list written from what the user wrote: a command split like a shell would."""
    example: list[str] = ["a", "b"]
    if isinstance(value, str):
        example = [value]
        if loc[-1:] in (["command"], ["entrypoint"]):
            with contextlib.suppress(ValueError):
                example = shlex.split(value)
    return f"write a list, e.g. {json.dumps(example)}"


def _unknown_key(loc: list[str], shown: str, fields: list[str]) -> ManifestError:
    word = loc[-1]
    return ManifestError(
        f"unknown key {word!r}{did_you_mean(word, fields)}",
        file=shown,
        key=".".join(loc),
        hint=f"allowed keys here: {', '.join(fields)}",
    )


def _required_hint(loc: list[str], shown: str = MANIFEST_NAME) -> str:
    if loc == ["project"] and Path(shown).name != MANIFEST_NAME:
        return (
            f"{Path(shown).name} has no [project] table; is it the manifest? "
            f"point -f at {MANIFEST_NAME} (or its directory)"
        )
    if loc and loc[-1] == "from":
        return "set from = 'PARENT' or an OS source, e.g. { debootstrap = 'bookworm' }"
    if loc and loc[-1] == "base":
        return "set base = 'NAME' of a base defined under [bases]"
    if loc == ["project"]:
        return "add a [project] table with at least name = '...'"
    return "add it"


def _type_hint(kind: str) -> str | None:
    return {
        "string_type": "write a quoted string",
        "tuple_type": 'write a list, e.g. ["a", "b"]',
        "bool_type": "write true or false",
        "int_type": "write a whole number",
        "dict_type": "write a table, e.g. { KEY = 'value' }",
    }.get(kind)
