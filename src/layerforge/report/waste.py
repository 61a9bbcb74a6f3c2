"""Waste: bytes a lower layer ships that a higher layer hides.

Applying layers in order (image-spec layer.md): a file written again by a higher layer
*shadows* the lower copy; a whiteout ``.wh.NAME`` *deletes* NAME and everything under it;
an opaque marker ``DIR/.wh..wh..opq`` deletes everything lower layers put under DIR; a
non-directory replacing a directory deletes the directory's contents. The hidden bytes are
still pulled and stored: they are waste, and the files responsible are listed.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from dataclasses import dataclass

from layerforge.report.listing import FileEntry

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


@dataclass(frozen=True)
class WasteItem:
    """``path`` (``size`` bytes, from layer ``lower``) hidden by layer ``upper``."""

    path: str
    size: int
    lower: int
    upper: int
    how: str  # shadowed | deleted


@dataclass(frozen=True)
class Waste:
    items: tuple[WasteItem, ...]  # largest first

    @property
    def total(self) -> int:
        return sum(i.size for i in self.items)


class _Tree:
    """Paths present so far: path -> (kind, size, layer index), with an index of each
    directory's children so that a whiteout removes its subtree without scanning every path
    (the scan made ``report`` quadratic: seconds for a fleet with a few thousand files)."""

    def __init__(self) -> None:
        self.paths: dict[str, tuple[str, int, int]] = {}
        self.children: dict[str, set[str]] = {}

    def add(self, path: str, value: tuple[str, int, int]) -> None:
        """Record ``path``, linking it (and any parent without an entry of its own) into
        the children index up to the root."""
        self.paths[path] = value
        child = path
        while child:
            siblings = self.children.setdefault(posixpath.dirname(child), set())
            if child in siblings:
                break
            siblings.add(child)
            child = posixpath.dirname(child)

    def _below(self, directory: str) -> list[str]:
        out: list[str] = []
        todo = [directory]
        while todo:
            for child in self.children.get(todo.pop(), ()):
                out.append(child)
                todo.append(child)
        return out

    def remove(self, path: str, upper: int, how: str, out: list[WasteItem]) -> None:
        doomed = ([path] if path in self.paths else []) + self._below(path)
        self.remove_paths(doomed, upper, how, out)

    def remove_under(self, directory: str, upper: int, out: list[WasteItem]) -> None:
        self.remove_paths(self._below(directory), upper, "deleted", out)

    def remove_paths(self, doomed: list[str], upper: int, how: str, out: list[WasteItem]) -> None:
        for p in doomed:
            self.children[posixpath.dirname(p)].discard(p)
            entry = self.paths.pop(p, None)  # None: a parent that has no entry of its own
            if entry is not None and entry[1] and entry[0] == "file":
                out.append(WasteItem(p, entry[1], entry[2], upper, how))


def _whiteouts(entries: Sequence[FileEntry]) -> tuple[list[str], list[str]]:
    deleted: list[str] = []
    opaque: list[str] = []
    for e in entries:
        directory, name = posixpath.split(e.path)
        if name == OPAQUE:
            opaque.append(directory)
        elif name.startswith(WHITEOUT):
            deleted.append(posixpath.join(directory, name[len(WHITEOUT) :]))
    return deleted, opaque


def waste(layers: Sequence[Sequence[FileEntry]]) -> Waste:
    """Hidden bytes of an image whose layers (bottom first) have these listings."""
    tree = _Tree()
    out: list[WasteItem] = []
    for index, entries in enumerate(layers):
        deleted, opaque = _whiteouts(entries)
        for directory in opaque:
            tree.remove_under(directory, index, out)
        for path in deleted:
            tree.remove(path, index, "deleted", out)
        for e in entries:
            name = posixpath.basename(e.path)
            if name.startswith(WHITEOUT):
                continue
            old = tree.paths.get(e.path)
            if old is not None and not (old[0] == "dir" and e.kind == "dir"):
                tree.remove(e.path, index, "shadowed", out)
            tree.add(e.path, (e.kind, e.size, index))
    return Waste(tuple(sorted(out, key=lambda i: (-i.size, i.path))))
