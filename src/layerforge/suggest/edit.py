"""``suggest --write``: apply a candidate's edits to layerforge.toml, keeping its comments and
layout (tomlkit). Requirements named by a file are never rewritten: the edit is refused with
the lines to move, for the user to apply."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import tomlkit

from layerforge.errors import UsageError
from layerforge.fsutil import atomic_write
from layerforge.suggest.candidates import Edit


def _table(doc: Any, node: str) -> Any:
    for section in ("bases", "services"):
        table = doc.get(section, {})
        if node in table:
            return section, table
    raise UsageError(f"the manifest has no node {node!r}", hint="run `layerforge suggest` again")


def edited_text(text: str, edits: tuple[Edit, ...], manifest: Path) -> str:
    doc = tomlkit.parse(text)
    for edit in edits:
        if edit.key == "add":
            table = tomlkit.table()
            for key, value in dict(edit.new).items() if isinstance(edit.new, dict) else ():
                table[key] = value
            doc.setdefault("bases", tomlkit.table())[edit.node] = table
            continue
        section, table = _table(doc, edit.node)
        if edit.key == "remove":
            del table[edit.node]
            continue
        node = table[edit.node]
        if edit.key == "requirements":
            current = node.get("requirements")
            if isinstance(current, str):
                raise UsageError(
                    f"{manifest}: {section}.{edit.node}.requirements names the file "
                    f"{current!r}; suggest --write edits only inline requirements",
                    hint=f"apply it by hand: {edit.node} requires {edit.new} "
                    f"(was {edit.old}), then `layerforge lock`",
                )
            node["requirements"] = list(edit.new) if isinstance(edit.new, list) else edit.new
        else:
            node[edit.key] = edit.new
    return tomlkit.dumps(doc)


def apply(manifest: Path, edits: tuple[Edit, ...]) -> str:
    """Write the edited manifest; returns the unified diff."""
    before = manifest.read_text()
    after = edited_text(before, edits, manifest)
    atomic_write(manifest, after.encode())
    return "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True),
            after.splitlines(keepends=True),
            fromfile=f"{manifest.name} (before)",
            tofile=manifest.name,
        )
    )
