"""A layer as an image references it: its descriptor, diff_id, what made it and its size."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from layerforge.oci.layout import Descriptor
from layerforge.oci.write import LayerBlob

SIZE_ANNOTATION = "dev.layerforge.uncompressed-size"


@dataclass(frozen=True)
class Layer:
    """A layer as an image references it: descriptor, diff_id, and what made it.

    Every layer descriptor layerforge writes carries its tar's size as the annotation
    ``dev.layerforge.uncompressed-size``, so that an image reused from a registry (whose
    layers stay remote) still knows its uncompressed size for budgets and reports.
    """

    descriptor: Descriptor
    diff_id: str
    created_by: str
    uncompressed_size: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "descriptor": self.descriptor.to_json(),
            "diff_id": self.diff_id,
            "created_by": self.created_by,
            "uncompressed_size": self.uncompressed_size,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Layer:
        return cls(
            Descriptor.from_json(data["descriptor"]),
            str(data["diff_id"]),
            str(data["created_by"]),
            int(data.get("uncompressed_size", 0)),
        )

    @classmethod
    def from_blob(cls, blob: LayerBlob, created_by: str) -> Layer:
        desc = Descriptor(blob.media_type, blob.digest, blob.size)
        return cls.sized(desc, blob.diff_id, created_by, blob.uncompressed_size)

    @classmethod
    def sized(cls, desc: Descriptor, diff_id: str, created_by: str, size: int) -> Layer:
        """The layer with its uncompressed size recorded in its descriptor's annotations."""
        annotations = dict(desc.annotations)
        annotations[SIZE_ANNOTATION] = str(size)
        desc = replace(desc, annotations=tuple(sorted(annotations.items())))
        return cls(desc, diff_id, created_by, size)


def annotated_size(desc: Descriptor) -> int:
    """The uncompressed size a descriptor's annotation records (0 if it has none)."""
    value = dict(desc.annotations).get(SIZE_ANNOTATION, "")
    return int(value) if value.isdigit() else 0
