"""The package ships its license and says what it is (issue 14, item 6): a LICENSE file,
License-Expression with License-File (PEP 639, so no ``License ::`` classifier), and
classifiers, read from a wheel that uv builds with the project's own build backend."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_package_metadata(tmp_path: Path) -> None:
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    subprocess.run(
        [sys.executable, "-m", "uv", "build", "--wheel", "-q", "-o", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = tmp_path.glob("layerforge-*.whl")
    with zipfile.ZipFile(wheel) as whl:
        names = whl.namelist()
        metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
        lines = whl.read(metadata).decode().splitlines()
    assert "License-Expression: Apache-2.0" in lines
    assert "License-File: LICENSE" in lines
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    classifiers = {line.split(": ", 1)[1] for line in lines if line.startswith("Classifier: ")}
    assert {
        "Programming Language :: Python :: 3.11",
        "Operating System :: POSIX :: Linux",
        "Topic :: Software Development :: Build Tools",
        "Environment :: Console",
    } <= classifiers
    assert not any(c.startswith("License ::") for c in classifiers)
