"""layerforge: reproducible, layered OCI images for fleets of Python services, no daemon.

The public API is re-exported here lazily (so that ``layerforge --help`` stays fast).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Workspace": "layerforge.api",
    "load_project": "layerforge.api",
    "lock_project": "layerforge.api",
    "check_lock": "layerforge.api",
    "plan_project": "layerforge.api",
    "build_project": "layerforge.api",
    "Project": "layerforge.manifest",
    "Node": "layerforge.manifest",
    "Lock": "layerforge.lock.lockfile",
    "Plan": "layerforge.plan",
    "Step": "layerforge.plan",
    "Store": "layerforge.oci.layout",
    "Event": "layerforge.events",
    "Reporter": "layerforge.events",
    "LayerforgeError": "layerforge.errors",
    "ManifestError": "layerforge.errors",
    "LockError": "layerforge.errors",
    "BuildError": "layerforge.errors",
    "RegistryError": "layerforge.errors",
}

__all__ = [
    "BuildError",
    "Event",
    "LayerforgeError",
    "Lock",
    "LockError",
    "ManifestError",
    "Node",
    "Plan",
    "Project",
    "RegistryError",
    "Reporter",
    "Step",
    "Store",
    "Workspace",
    "__version__",
    "build_project",
    "check_lock",
    "load_project",
    "lock_project",
    "plan_project",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'layerforge' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
