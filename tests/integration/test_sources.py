"""A project whose root base is another image (oci:LAYOUT:TAG), and `lock --check`."""

from __future__ import annotations

from pathlib import Path

import pytest

from layerforge.cli import main
from tests.conftest import require_tools
from tests.integration.tools import Buildah, skopeo_raw

pytestmark = pytest.mark.integration

DERIVED = """
[project]
name = "derived"
python = "3.11"

[bases.base]
from = "oci:{layout}:cpu:latest"
requirements = [{reqs}]

[services.svc]
base = "base"
source = "svc"
command = ["python", "-m", "svc"]
"""


def write(directory: Path, layout: Path, reqs: str) -> None:
    (directory / "svc/svc").mkdir(parents=True, exist_ok=True)
    (directory / "svc/svc/__init__.py").write_text("")
    (directory / "svc/svc/__main__.py").write_text(
        "import numpy, six\nprint('derived', numpy.__version__, six.__version__)\n"
    )
    (directory / "layerforge.toml").write_text(DERIVED.format(layout=layout, reqs=reqs))


def test_oci_layout_source_and_lock_check(
    fleet: Path, tmp_path: Path, shared_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_tools("skopeo", "buildah")
    layout = fleet / ".layerforge"
    directory = tmp_path / "derived"
    write(directory, layout, '"six==1.17.0"')
    args = ["-f", str(directory), "--cache-dir", str(shared_cache)]
    assert main(["lock", *args]) == 0
    assert main(["lock", "--check", *args]) == 0
    assert main(["build", *args]) == 0
    capsys.readouterr()

    store = directory / ".layerforge"
    cpu = skopeo_raw(layout, "cpu:latest")
    svc = skopeo_raw(store, "svc:latest")
    assert svc["layers"][: len(cpu["layers"])] == cpu["layers"]  # shared by digest
    buildah = Buildah(tmp_path / "buildah")
    out = buildah.run_in(buildah.from_oci(store, "svc:latest"), "python", "-m", "svc")
    assert "derived 2." in out and "1.17.0" in out

    write(directory, layout, '"six==1.16.0"')
    assert main(["lock", "--check", *args]) == 2
    err = capsys.readouterr().err
    assert "out of date for: base, svc" in err and "layerforge lock" in err
    assert main(["build", *args]) == 2  # a stale lock is never built from
