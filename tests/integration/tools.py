"""Thin wrappers over the third-party tools that read and run what we build."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any


def run(args: list[str], *, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    proc = subprocess.run(
        args, capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
            f"{proc.stderr[-3000:]}"
        )
    return proc.stdout + proc.stderr


def skopeo_inspect(store: Path, ref: str) -> dict[str, Any]:
    out = subprocess.run(
        ["skopeo", "inspect", f"oci:{store}:{ref}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def skopeo_raw(store: Path, ref: str, *, config: bool = False) -> dict[str, Any]:
    args = ["skopeo", "inspect", "--raw"] + (["--config"] if config else [])
    out = subprocess.run(
        [*args, f"oci:{store}:{ref}"], capture_output=True, text=True, check=True, timeout=120
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


class Buildah:
    """buildah with a private storage root, vfs driver and chroot isolation."""

    def __init__(self, root: Path) -> None:
        self.root = root
        tmp = root / "tmp"  # private: buildah keeps RUN cache mounts under $TMPDIR
        tmp.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "STORAGE_DRIVER": "vfs",
            "BUILDAH_ISOLATION": "chroot",
            "TMPDIR": str(tmp),
        }

    def _base(self) -> list[str]:
        return [
            "buildah",
            "--root",
            str(self.root / "root"),
            "--runroot",
            str(self.root / "run"),
            "--storage-driver",
            "vfs",
        ]

    def __call__(self, *args: str, timeout: float = 900) -> str:
        # buildah's runtime copies itself into a sealed memfd; the kernel sometimes answers
        # F_ADD_SEALS with EBUSY ("Close_Fd sealing memfd copy: Device or resource busy"), a
        # transient that has nothing to do with the image: retry that, and only that.
        for attempt in range(3):
            try:
                return run([*self._base(), *args], env=self.env, timeout=timeout)
            except AssertionError as exc:
                if "sealing memfd copy" not in str(exc) or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def from_oci(self, store: Path, ref: str) -> str:
        # buildah names the image after the layout's path, and rejects a path with a
        # component starting with a dot (".layerforge"): reach the layout through a link.
        link = self.root / "layouts" / hashlib.sha256(str(store).encode()).hexdigest()[:12]
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(store)
        out = self("from", "--pull-never", "--quiet", f"oci:{link}:{ref}")
        return out.strip().splitlines()[-1]

    def run_in(self, container: str, *argv: str, timeout: float = 300) -> str:
        return self("run", container, "--", *argv, timeout=timeout)
