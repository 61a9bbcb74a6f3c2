"""Tiny root filesystems made of the host's own programs, for sandbox tests."""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from layerforge import proc


def copy_programs(root: Path, programs: Iterable[str], bindir: str = "usr/bin") -> None:
    """Copy host ``programs`` into ``root/bindir`` with the shared libraries they load (by
    ldd), at the same paths inside ``root``."""
    for name in programs:
        program = Path(proc.which(name)).resolve()
        target = root / bindir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(program, target)
        for line in proc.run(["ldd", str(program)]).stdout.splitlines():
            for word in line.split():
                if word.startswith("/"):
                    library = root / word.lstrip("/")
                    library.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(Path(word).resolve(), library)
