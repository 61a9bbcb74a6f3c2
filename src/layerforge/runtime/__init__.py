"""What is baked into images with runtime groups: the launcher (``launcher.py``, baked as the
package ``layerforge_runtime``), its wheel installer and a CA bundle (standard library only).

``cacert.pem`` is certifi's bundle, copied byte for byte from the wheel :data:`CA_BUNDLE`
names (its sha256 is checked by the tests; ``scripts/update_cacert.py`` refreshes it). The
launcher trusts it last, after ``SSL_CERT_FILE``, ``PIP_CERT``, ``LAYERFORGE_RUNTIME_CERT``
and the image's own CA store, so an image without ``ca-certificates`` can still download a
group over HTTPS. These bytes feed the content key of every node with runtime groups
(:func:`support_digest`): a new launcher or bundle rebuilds their runtime layers.
"""

from __future__ import annotations

import hashlib
from importlib import resources

# Where cacert.pem comes from: the wheel (name, version, its sha256) and the member's sha256.
CA_BUNDLE = {
    "wheel": "certifi-2026.7.22-py3-none-any.whl",
    "wheel_sha256": "62f22742b58a1a33014a2b6b706588a8d7e2a88ae7bd1a6ebe8c992928483775",
    "member": "certifi/cacert.pem",
    "sha256": "9cc2a774b5198dcff14d9be1e66091f538975d867ce029a96bce15a55dfd730f",
}

SUPPORT_FILES = ("launcher.py", "wheel.py", "cacert.pem")


def support_files() -> dict[str, bytes]:
    """File name in this package -> bytes, of everything the runtime layer bakes from it."""
    here = resources.files(__name__)
    return {name: here.joinpath(name).read_bytes() for name in SUPPORT_FILES}


def support_digest() -> str:
    digest = hashlib.sha256()
    for name, data in support_files().items():
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
    return f"sha256:{digest.hexdigest()}"
