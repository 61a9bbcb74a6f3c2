"""The manifest: ``layerforge.toml`` -> a typed, frozen, validated :class:`Project`.

``model`` holds the types, ``graph`` the walks of the base/service tree, ``load`` finds,
validates (with a cache) and builds, ``parse`` turns validated data into nodes, ``messages``
words the errors, ``schema`` is the pydantic shape (also shipped as ``layerforge.schema.json``),
``requirements``/``confine``/``runtime`` read what nodes name, ``indexes`` the named package
indexes, ``starter`` writes
``layerforge init``'s manifest.

This package does not import ``schema`` (pydantic is slow to import, and a manifest whose
validation is cached never needs it): only ``load`` does, inside the function that validates.
"""

from __future__ import annotations

from layerforge.manifest.loader import cache_entry, find_manifest, load
from layerforge.manifest.messages import MANIFEST_NAME, did_you_mean
from layerforge.manifest.model import Node, OSSource, Project

__all__ = [
    "MANIFEST_NAME",
    "Node",
    "OSSource",
    "Project",
    "cache_entry",
    "did_you_mean",
    "find_manifest",
    "load",
]
