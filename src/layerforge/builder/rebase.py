"""Rebase: an image put on a new OS without reinstalling Python.

For a step the plan marks ``rebase`` (only the OS below the node changed, see
``plan.rebases``), the executor renews the OS layer and the system layer (its apt and run
steps run again on the new OS: dpkg's database lives in those layers) and takes every layer
above them from the node's previous image **by descriptor**: the venv's packages, the runtime
layer and the app layer are not read, tarred or compressed again. Their cache keys hold no OS
(python version and pins, runtime pins, the source tree), so they are the layers a full build
would write; every rebased image is verified like any built one.

This holds only while the interpreter is the same: its path, its X.Y, and, on a Debian root,
the upstream version of ``pythonX.Y-minimal`` (a Debian revision such as ``+deb12u9`` keeps
the ABI). When it changed, ``layerforge rebase`` refuses, and ``build`` builds the node in
full.
"""

from __future__ import annotations

from dataclasses import dataclass

from layerforge.errors import BuildError
from layerforge.oci.layer import Layer
from layerforge.oci.layout import Store
from layerforge.records import ImageRecord, PythonInfo, read_record
from layerforge.sbom.contents import image_contents, interpreter_version

BASE_DIGEST = "org.opencontainers.image.base.digest"
VENV_LAYER = "layerforge: venv "
SYSTEM_LAYER = "layerforge: system ("


@dataclass(frozen=True)
class Interpreter:
    executable: str
    version: str  # X.Y.Z when the dpkg database says, else X.Y

    def describe(self) -> str:
        return f"{self.executable} {self.version}"


def previous_image(store: Store, node: str) -> ImageRecord | None:
    """The image ``node:latest`` names: the one a rebase takes its upper layers from."""
    return read_record(store, f"{node}:latest")


def os_layers(record: ImageRecord) -> tuple[Layer, ...] | None:
    """A root image's OS layers: those below its venv layer (None: it has none)."""
    for i, layer in enumerate(record.layers):
        if layer.created_by.startswith(VENV_LAYER):
            return record.layers[:i]
    return None


def interpreter(store: Store, layers: tuple[Layer, ...], python: PythonInfo) -> Interpreter:
    """The interpreter of an OS whose layers are ``layers`` (read through their contents)."""
    version = interpreter_version(image_contents(store, layers), python.version)
    return Interpreter(python.executable, version)


def ensure_same_interpreter(
    store: Store, section: str, previous: ImageRecord, layers: tuple[Layer, ...], python: PythonInfo
) -> None:
    """A BuildError unless the new OS (``layers``, ``python``) has the previous image's
    interpreter."""
    hint = "run `layerforge build` to rebuild these images in full"
    old_os = os_layers(previous)
    if old_os is None:
        raise BuildError(f"{section}: its previous image has no venv layer to rebase", hint=hint)
    before = interpreter(store, old_os, previous.python)
    after = interpreter(store, layers, python)
    if before != after:
        raise BuildError(
            f"{section}: the interpreter changed ({before.describe()} -> {after.describe()}): "
            "a rebase cannot keep the Python layers",
            hint=hint,
        )


def kept_layers(
    store: Store, previous: ImageRecord, *, has_system: bool
) -> tuple[Layer, ...] | None:
    """The previous image's layers above its OS, venv and system layers (by descriptor), or
    None when they cannot be told apart or a blob is gone (then the node is built in full)."""
    manifest = store.read_json(previous.manifest.digest)
    base = str(manifest.get("annotations", {}).get(BASE_DIGEST, ""))
    if base:
        if not store.has_blob(base):
            return None
        own = previous.layers[len(store.read_json(base).get("layers", [])) :]
    else:
        below = os_layers(previous)
        if below is None:
            return None
        own = previous.layers[len(below) + 1 :]
    if own and own[0].created_by.startswith(SYSTEM_LAYER):
        own = own[1:]
    elif has_system:
        return None
    if not all(store.has_blob(layer.descriptor.digest) for layer in own):
        return None
    return own
