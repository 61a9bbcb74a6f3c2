"""An independent check of an OCI image layout, written for the tests (no layerforge code).

Every tag of ``index.json`` -> its manifest (or index) -> config and layers: each blob exists,
its sha256 equals its name, its size equals the descriptor's, and each layer decompressed
hashes to the config's ``rootfs.diff_ids`` entry. Every file under ``blobs/sha256`` whose name
looks like a digest hashes to that name (a crash must never leave a half-written blob under its
final name).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import zstandard

HEX = re.compile(r"[0-9a-f]{64}")
REF = "org.opencontainers.image.ref.name"


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _diff_id(path: Path, media_type: str) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as raw:
        if media_type.endswith("+zstd"):
            reader: Any = zstandard.ZstdDecompressor().stream_reader(raw)
        elif media_type.endswith("gzip"):
            reader = gzip.GzipFile(fileobj=raw)
        else:
            reader = raw
        while chunk := reader.read(1 << 20):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


class _Checker:
    def __init__(self, root: Path) -> None:
        self.blobs = root / "blobs" / "sha256"
        self.problems: list[str] = []
        self.hashes: dict[str, str] = {}

    def scan(self) -> None:
        for path in sorted(self.blobs.iterdir()):
            if HEX.fullmatch(path.name):
                self.hashes[path.name] = _sha256_file(path)
                if self.hashes[path.name] != path.name:
                    self.problems.append(f"blob {path.name} holds {self.hashes[path.name]}")
            elif not path.name.startswith("."):
                self.problems.append(f"{path} is neither a blob nor a hidden temporary file")

    def blob(self, desc: dict[str, Any], what: str) -> Path | None:
        hexpart = str(desc["digest"]).removeprefix("sha256:")
        path = self.blobs / hexpart
        if hexpart not in self.hashes:
            self.problems.append(f"{what}: blob {desc['digest']} is missing")
            return None
        if path.stat().st_size != int(desc["size"]):
            self.problems.append(f"{what}: blob {desc['digest']} size {path.stat().st_size} "
                                 f"!= {desc['size']}")  # fmt: skip
        return path

    def image(self, desc: dict[str, Any], what: str) -> None:
        path = self.blob(desc, what)
        if path is None:
            return
        doc = json.loads(path.read_bytes())
        for sub in doc.get("manifests", []):
            self.image(sub, f"{what} -> {sub['digest'][:19]}")
        if "artifactType" in doc:  # an SBOM (layerforge.sbom): blobs, no layers or diff_ids
            for i, sub in enumerate([doc["config"], *doc.get("layers", [])]):
                self.blob(sub, f"{what} artifact blob {i}")
        elif "config" in doc:
            self.layers(doc, what)

    def layers(self, manifest: dict[str, Any], what: str) -> None:
        config_path = self.blob(manifest["config"], f"{what} config")
        layers = [(layer, self.blob(layer, f"{what} layer {i}")) for i, layer in
                  enumerate(manifest["layers"])]  # fmt: skip
        if config_path is None:
            return
        diff_ids = json.loads(config_path.read_bytes())["rootfs"]["diff_ids"]
        if len(diff_ids) != len(layers):
            self.problems.append(f"{what}: {len(diff_ids)} diff_ids for {len(layers)} layers")
        for i, ((layer, lpath), diff_id) in enumerate(zip(layers, diff_ids, strict=False)):
            if lpath is not None and _diff_id(lpath, str(layer["mediaType"])) != diff_id:
                self.problems.append(f"{what} layer {i}: diff_id is not {diff_id}")


def validate(root: Path) -> list[str]:
    """Problems found in the layout at ``root`` (empty: it is whole)."""
    checker = _Checker(root)
    checker.scan()
    index = json.loads((root / "index.json").read_text())
    for desc in index["manifests"]:
        checker.image(desc, desc.get("annotations", {}).get(REF, "?"))
    return checker.problems


def tag_digests(root: Path) -> dict[str, str]:
    """ref name -> manifest digest of every tag in the layout."""
    index = json.loads((root / "index.json").read_text())
    return {str(d.get("annotations", {}).get(REF)): str(d["digest"]) for d in index["manifests"]}


def private_cache(shared: Path, target: Path) -> Path:
    """A cache directory of its own for a test that runs ``gc`` or kills builds: the shared
    cache's debootstrap root and sandbox entries (system layers, apt downloads), hardlinked
    (read only by builds), so no debootstrap or apt step runs again."""
    target.mkdir(parents=True)
    for area in ("debootstrap", "sandbox"):
        if (shared / area).is_dir():
            shutil.copytree(shared / area, target / area, symlinks=True, copy_function=os.link)
    return target
