"""Manifest values written into exported files exactly as our builder stores them.

Semantics, decided once: values are **literal**. Our builder writes ``env``, ``labels`` and
``workdir`` into the image config as written (``$X`` is not expanded), so the exports must
keep a Dockerfile (whose ENV, LABEL, WORKDIR and COPY words pass through its shell lexer) and
a bake file (whose strings are HCL templates) from expanding anything.

- Dockerfile, double-quoted word (moby ``shell.Lex``): a backslash escapes only ``"``, ``$``
  and itself there; UTF-8 is kept as it is (``\\uXXXX`` would stay literal). No Dockerfile
  syntax carries a newline or CR into ENV/LABEL/WORKDIR: such a value is a UsageError.
- Dockerfile, exec-form (JSON) word of COPY: the lexer still runs on each element, unquoted,
  where a backslash escapes any character.
- HCL: ``${`` and ``%{`` start an interpolation or a directive; ``$${`` and ``%%{`` are their
  escapes. JSON's escapes are HCL's otherwise.
"""

from __future__ import annotations

import json
import re

from layerforge.errors import UsageError

# What today's exports wrote bare or json-quoted stays byte for byte the same.
_PLAIN = re.compile(r"^[A-Za-z0-9_./:@%+,=-]+$")
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_./-]+$")


def _check_line(value: str, key: str) -> None:
    if "\n" in value or "\r" in value:
        raise UsageError(
            f"{key} holds a newline, which a Dockerfile cannot carry in ENV, LABEL, WORKDIR or "
            "COPY (layerforge build keeps it; the exported Dockerfile could not)",
            hint=f"write {key} on one line to export it",
        )


def dockerfile_word(value: str, key: str) -> str:
    """A double-quoted Dockerfile word whose value after the lexer is exactly ``value``.

    ``key`` (e.g. ``services.api.env.X``) names the value in the error for a newline."""
    _check_line(value, key)
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


def dockerfile_key(value: str, key: str) -> str:
    """A LABEL key: bare when it needs no quoting (today's bytes), else a quoted word."""
    return value if _PLAIN_KEY.match(value) else dockerfile_word(value, key)


def dockerfile_path(value: str, key: str) -> str:
    """A WORKDIR argument: bare when plain (today's bytes), else a quoted word."""
    return value if _PLAIN.match(value) else dockerfile_word(value, key)


def dockerfile_copy(sources: list[str], target: str, key: str) -> str:
    """The arguments of COPY: bare when every path is plain (today's bytes), else the
    exec form, each element escaped for the lexer (which splits the bare form at spaces)."""
    paths = [*sources, target]
    if all(_PLAIN.match(p) for p in paths):
        return " ".join(paths)
    for p in paths:
        _check_line(p, key)
    words = [re.sub(r"""([\\$"'])""", r"\\\1", p) for p in paths]
    return json.dumps(words, ensure_ascii=False)


def hcl_string(value: str) -> str:
    """A quoted HCL string whose value is exactly ``value`` (no interpolation)."""
    return json.dumps(value).replace("${", "$${").replace("%{", "%%{")
