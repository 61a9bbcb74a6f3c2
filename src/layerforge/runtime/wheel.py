"""Unpack a wheel into an installation scheme, as pip would (no bytecode, no dependencies).

Standard library only: baked into images as ``layerforge_runtime/wheel.py`` with the launcher.
``.data/{purelib,platlib,scripts,data,headers}`` go to their scheme directories, ``#!python``
scripts get the target interpreter, console scripts are generated from
``entry_points.txt``, and a new ``RECORD`` (with ``INSTALLER``) lists what was written.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import sys
import sysconfig
import zipfile
from dataclasses import dataclass
from pathlib import Path

INSTALLER_NAME = "layerforge-runtime"


class WheelError(Exception):
    """A file that is not a wheel we can install."""


@dataclass(frozen=True)
class Target:
    """Where a wheel's files go (the running interpreter's scheme, or a --target dir)."""

    purelib: Path
    platlib: Path
    scripts: Path
    data: Path
    headers: Path
    python: str  # interpreter written into generated scripts

    @classmethod
    def current(cls) -> Target:
        paths = sysconfig.get_paths()
        return cls(
            Path(paths["purelib"]),
            Path(paths["platlib"]),
            Path(paths["scripts"]),
            Path(paths["data"]),
            Path(paths["include"]),
            str(Path(sys.prefix) / "bin" / "python"),
        )

    @classmethod
    def directory(cls, root: Path, python: str) -> Target:
        return cls(root, root, root / "bin", root, root / "include", python)

    @property
    def state(self) -> Path:
        return self.data / ".layerforge-runtime"


def install_wheel(path: Path, target: Target) -> None:
    """Unpack a wheel into ``target`` the way pip would (no bytecode, no dependencies)."""
    with zipfile.ZipFile(path) as zf:
        info_dir = _dist_info(zf, path)
        data_dir = info_dir.removesuffix(".dist-info") + ".data"
        root_is_pure = b"Root-Is-Purelib: true" in zf.read(f"{info_dir}/WHEEL")
        root = target.purelib if root_is_pure else target.platlib
        record: list[list[str]] = []
        for item in zf.infolist():
            if item.is_dir() or item.filename == f"{info_dir}/RECORD":
                continue
            dest = _destination(item.filename, data_dir, root, target)
            data = zf.read(item)
            if item.filename.startswith(f"{data_dir}/scripts/") and data.startswith(b"#!python"):
                data = b"#!" + target.python.encode() + data.removeprefix(b"#!python")
            executable = bool((item.external_attr >> 16) & 0o111) or dest.parent == target.scripts
            record.append(_write_file(dest, data, executable, root))
        for name, script in _console_scripts(zf, info_dir, target):
            record.append(_write_file(target.scripts / name, script, True, root))
        installer = f"{INSTALLER_NAME}\n".encode()
        record.append(_write_file(root / info_dir / "INSTALLER", installer, False, root))
        record.append([f"{info_dir}/RECORD", "", ""])
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(record)
        (root / info_dir / "RECORD").write_text(out.getvalue())


def _dist_info(zf: zipfile.ZipFile, path: Path) -> str:
    names = {n.split("/", 1)[0] for n in zf.namelist() if n.split("/", 1)[0].endswith(".dist-info")}
    if len(names) != 1:
        raise WheelError(f"{path.name}: not a wheel (expected one .dist-info directory)")
    return names.pop()


def _destination(member: str, data_dir: str, root: Path, target: Target) -> Path:
    parts = member.split("/")
    if member.startswith("/") or ".." in parts or "\\" in member:
        raise WheelError(f"refusing wheel member {member!r} (escapes the target)")
    if parts[0] != data_dir:
        return root.joinpath(*parts)
    schemes = {
        "purelib": target.purelib,
        "platlib": target.platlib,
        "scripts": target.scripts,
        "data": target.data,
        "headers": target.headers,
    }
    if len(parts) < 3 or parts[1] not in schemes:
        raise WheelError(f"unknown wheel data directory in {member!r}")
    return schemes[parts[1]].joinpath(*parts[2:])


def _write_file(dest: Path, data: bytes, executable: bool, root: Path) -> list[str]:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.lf-tmp")
    tmp.write_bytes(data)
    tmp.chmod(0o755 if executable else 0o644)
    tmp.replace(dest)
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return [os.path.relpath(dest, root), f"sha256={digest}", str(len(data))]


def _console_scripts(zf: zipfile.ZipFile, info_dir: str, target: Target) -> list[tuple[str, bytes]]:
    try:
        text = zf.read(f"{info_dir}/entry_points.txt").decode()
    except KeyError:
        return []
    out: list[tuple[str, bytes]] = []
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = line.strip("[]").strip()
        elif "=" in line and section in ("console_scripts", "gui_scripts"):
            name, _, ref = (x.strip() for x in line.partition("="))
            module, _, attr = ref.split()[0].partition(":")
            body = (
                f"#!{target.python}\nimport sys\nfrom {module} import {attr.split('.')[0]}\n"
                f"if __name__ == '__main__':\n    sys.exit({attr}())\n"
            )
            out.append((name, body.encode()))
    return out
