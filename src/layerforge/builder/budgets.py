"""Size budgets: ``max_size`` on a node caps its image's uncompressed size.

The uncompressed size (the sum of the layer tars) is what ``docker images`` shows and what
a node's disk holds once the image is unpacked, so that is what a budget limits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from layerforge.errors import BudgetError
from layerforge.manifest import Node
from layerforge.records import ImageRecord
from layerforge.sizes import format_size


@dataclass(frozen=True)
class Breach:
    node: str
    size: int
    limit: int

    def describe(self) -> str:
        over = self.size - self.limit
        return (
            f"{self.node}: {format_size(self.size)} uncompressed, over its max_size of "
            f"{format_size(self.limit)} by {format_size(over)}"
        )


def image_bytes(record: ImageRecord) -> int:
    return sum(layer.uncompressed_size for layer in record.layers)


def check(node: Node, record: ImageRecord) -> Breach | None:
    """The breach of ``node``'s budget by its built image, if any."""
    if node.max_size is None:
        return None
    size = image_bytes(record)
    return Breach(node.name, size, node.max_size) if size > node.max_size else None


def summary(breaches: Sequence[Breach]) -> str:
    """One line for every image over its budget that ``--allow-oversize`` let through."""
    noun = "image over its" if len(breaches) == 1 else "images over their"
    each = ", ".join(f"{b.node} by {format_size(b.size - b.limit)}" for b in breaches)
    return f"{len(breaches)} {noun} max_size (allowed by --allow-oversize): {each}"


def error(breaches: Sequence[Breach], *, building: bool) -> BudgetError:
    lines = "\n".join(f"  {b.describe()}" for b in breaches)
    noun = "image exceeds its" if len(breaches) == 1 else "images exceed their"
    hint = "raise max_size in layerforge.toml, or make the image smaller (`layerforge report`)"
    if building:
        hint += "; `layerforge build --allow-oversize` builds it anyway"
    return BudgetError(
        f"{len(breaches)} {noun} size budget:\n{lines}",
        breaches=tuple((b.node, b.size, b.limit) for b in breaches),
        hint=hint,
    )
