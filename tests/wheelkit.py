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
    files: dict[str, bytes] | None = None,
    tag: str = "py3-none-any",
    package: bool = True,
    license_expression: str = "",
) -> Path:
    """A wheel: package ``name`` with ``VERSION`` (unless ``package`` is false), optional
    console scripts (``{"cmd": "module:func"}``), ``.data/scripts`` files, any other
    ``files`` (``{"nvidia/__init__.py": b""}``: shared namespace files, data, big blobs) and
    a wheel ``tag`` (``cp311-cp311-manylinux_2_31_x86_64`` makes a platform wheel)."""
    directory.mkdir(parents=True, exist_ok=True)
    info = f"{name}-{version}.dist-info"
    purelib = "true" if tag.startswith("py") else "false"
    meta = [f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"]
    meta += [f"Requires-Dist: {r}\n" for r in requires]
    meta += [f"License-Expression: {license_expression}\n"] if license_expression else []
    members: dict[str, bytes] = {}
    if package:
        members[f"{name}/__init__.py"] = (
            f"VERSION = {version!r}\n\ndef main() -> int:\n    print('{name}', VERSION)\n"
            "    return 0\n"
        ).encode()
    members.update(files or {})
    members[f"{info}/METADATA"] = "".join(meta).encode()
    members[f"{info}/WHEEL"] = (
        f"Wheel-Version: 1.0\nGenerator: wheelkit\nRoot-Is-Purelib: {purelib}\nTag: {tag}\n"
    ).encode()
    if scripts:
        body = "[console_scripts]\n" + "".join(f"{k} = {v}\n" for k, v in scripts.items())
        members[f"{info}/entry_points.txt"] = body.encode()
    for script, text in (data_scripts or {}).items():
        members[f"{name}-{version}.data/scripts/{script}"] = text.encode()
    record = "".join(f"{path},{_record_hash(data)},{len(data)}\n" for path, data in members.items())
    members[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    path = directory / f"{name}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for member, data in sorted(members.items()):
            zf.writestr(member, data)
    return path


def make_sdist(
    directory: Path,
    name: str,
    version: str,
    *,
    files: dict[str, bytes] | None = None,
    setup_py: str | None = None,
    requires: tuple[str, ...] = (),
) -> Path:
    """A source distribution ``name-version.tar.gz`` with static PKG-INFO (so uv can lock it
    without building), a ``pyproject.toml`` using setuptools, and ``files`` (C sources, a
    package). ``setup_py`` defaults to a pure-Python ``setup()``."""
    import io
    import tarfile

    directory.mkdir(parents=True, exist_ok=True)
    top = f"{name}-{version}"
    meta = [f"Metadata-Version: 2.2\nName: {name}\nVersion: {version}\n"]
    meta += [f"Requires-Dist: {r}\n" for r in requires]
    members: dict[str, bytes] = {
        "PKG-INFO": "".join(meta).encode(),
        "pyproject.toml": (
            b'[build-system]\nrequires = ["setuptools>=61"]\n'
            b'build-backend = "setuptools.build_meta"\n'
        ),
        "setup.py": (
            setup_py
            or f"from setuptools import setup\nsetup(name={name!r}, version={version!r}, "
            f"packages=[{name!r}])\n"
        ).encode(),
    }
    if setup_py is None and not any(k.startswith(f"{name}/") for k in files or {}):
        members[f"{name}/__init__.py"] = f"VERSION = {version!r}\n".encode()
    members.update(files or {})
    path = directory / f"{top}.tar.gz"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tf:
        for member, data in sorted(members.items()):
            info = tarfile.TarInfo(f"{top}/{member}")
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            tf.addfile(info, io.BytesIO(data))
    path.write_bytes(buf.getvalue())
    return path


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_index(root: Path, wheels: list[Path]) -> Path:
    """A PEP 503 simple index (``root/simple``) of ``wheels``; returns its directory."""
    simple = root / "simple"
    by_name: dict[str, list[Path]] = {}
    for wheel in wheels:
        by_name.setdefault(wheel.name.split("-")[0].replace("_", "-").lower(), []).append(wheel)
    for name, files in by_name.items():
        page = simple / name
        page.mkdir(parents=True, exist_ok=True)
        links = "".join(
            f'<a href="{w.as_uri()}#sha256={sha256_of(w)}">{w.name}</a>\n' for w in sorted(files)
        )
        (page / "index.html").write_text(f"<html><body>\n{links}</body></html>\n")
    return simple
