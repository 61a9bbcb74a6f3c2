"""Tiny real wheels and a PEP 503 index of them on disk, for offline resolution and installs."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def make_wheel(
    directory: Path,
    name: str,
    version: str,
    *,
    requires: tuple[str, ...] = (),
    scripts: dict[str, str] | None = None,
    data_scripts: dict[str, str] | None = None,
) -> Path:
    """A pure-Python wheel: package ``name`` with ``VERSION``, optional console scripts
    (``{"cmd": "module:func"}``) and ``.data/scripts`` files."""
    directory.mkdir(parents=True, exist_ok=True)
    info = f"{name}-{version}.dist-info"
    meta = [f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"]
    meta += [f"Requires-Dist: {r}\n" for r in requires]
    files: dict[str, bytes] = {
        f"{name}/__init__.py": (
            f"VERSION = {version!r}\n\ndef main() -> int:\n    print('{name}', VERSION)\n"
            "    return 0\n"
        ).encode(),
        f"{info}/METADATA": "".join(meta).encode(),
        f"{info}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: wheelkit\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    if scripts:
        body = "[console_scripts]\n" + "".join(f"{k} = {v}\n" for k, v in scripts.items())
        files[f"{info}/entry_points.txt"] = body.encode()
    for script, text in (data_scripts or {}).items():
        files[f"{name}-{version}.data/scripts/{script}"] = text.encode()
    record = "".join(f"{path},{_record_hash(data)},{len(data)}\n" for path, data in files.items())
    files[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    path = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for member, data in sorted(files.items()):
            zf.writestr(member, data)
    return path


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_index(root: Path, wheels: list[Path]) -> Path:
    """A PEP 503 simple index (``root/simple``) of ``wheels``; returns its directory."""
    simple = root / "simple"
    by_name: dict[str, list[Path]] = {}
    for wheel in wheels:
        by_name.setdefault(wheel.name.split("-")[0].replace("_", "-"), []).append(wheel)
    for name, files in by_name.items():
        page = simple / name
        page.mkdir(parents=True, exist_ok=True)
        links = "".join(
            f'<a href="{w.as_uri()}#sha256={sha256_of(w)}">{w.name}</a>\n' for w in sorted(files)
        )
        (page / "index.html").write_text(f"<html><body>\n{links}</body></html>\n")
    return simple
