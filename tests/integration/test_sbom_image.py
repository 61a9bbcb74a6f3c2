"""Item 2 of issue 16: the SBOM of a real Debian image lists what the image holds.

A base from debootstrap (the shared cache's root) with a ``system`` step, a wheel made by
the test, and a service on it. The image is unpacked by umoci; dpkg-query reads its dpkg
database and importlib.metadata its venv: both must equal the SBOM's components.
"""

from __future__ import annotations

import json
import subprocess
from importlib.metadata import distributions
from pathlib import Path

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packaging.utils import canonicalize_name

from layerforge.lock import lockfile
from tests.conftest import require_tools
from tests.integration.tiny import cli, cli_json
from tests.wheelkit import make_wheel

pytestmark = pytest.mark.integration

MANIFEST = """
[project]
name = "sbom"
python = "3.11"
find_links = ["wheels"]

[bases.base]
from = { debootstrap = "bookworm" }
system = ["libgomp1"]
requirements = ["lfsbom==1.0"]

[services.svc]
base = "base"
source = "svc"
command = ["python", "-m", "svc"]
"""


def test_sbom_matches_image(tmp_path: Path, shared_cache: Path) -> None:
    require_tools("debootstrap", "umoci")  # and dpkg-query, part of every Debian host
    project = tmp_path / "p"
    (project / "svc/svc").mkdir(parents=True)
    (project / "svc/svc/__main__.py").write_text("import lfsbom\n")
    make_wheel(project / "wheels", "lfsbom", "1.0")
    (project / "layerforge.toml").write_text(MANIFEST)
    args = ("-f", str(project), "--cache-dir", str(shared_cache))
    assert cli("lock", *args)[0] == 0
    cli_json("build", "--no-verify", *args)
    out = tmp_path / "out" / "svc.cdx.json"
    code, _, err = cli("sbom", "svc", "-o", str(out), *args)
    assert code == 0, err
    document = out.read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(document) is None
    sbom = json.loads(document)

    bundle = tmp_path / "bundle"
    subprocess.run(
        ["umoci", "unpack", "--rootless", "--image", f"{project / '.layerforge'}:svc:latest",
         str(bundle)],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    root = bundle / "rootfs"
    listed = subprocess.run(
        ["dpkg-query", f"--admindir={root / 'var/lib/dpkg'}", "-W",
         "-f=${db:Status-Status} ${Package} ${Version} ${Architecture}\\n"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    installed = {
        tuple(line.split()[1:]) for line in listed.splitlines() if line.startswith("installed ")
    }
    debs = {
        (c["name"], c["version"], c["purl"].split("arch=")[1].split("&")[0])
        for c in sbom["components"]
        if c["purl"].startswith("pkg:deb/debian/")
    }
    assert debs == installed
    assert any(name == "libgomp1" for name, _, _ in debs)  # from the system step

    site = root / "opt/venv/lib/python3.11/site-packages"
    in_venv = {
        (canonicalize_name(d.metadata["Name"]), d.version) for d in distributions(path=[str(site)])
    }
    pypi = {
        (c["name"], c["version"]) for c in sbom["components"] if c["purl"].startswith("pkg:pypi/")
    }
    assert pypi == in_venv
    assert ("lfsbom", "1.0") in pypi
    (lfsbom,) = [c for c in sbom["components"] if c["name"] == "lfsbom"]
    lock = lockfile.read(project / "layerforge.lock")
    (locked,) = [p for p in lock.nodes["base"].packages if p.name == "lfsbom"]
    assert lfsbom["hashes"] == [{"alg": "SHA-256", "content": locked.sha256}]
    python = [c for c in sbom["components"] if c["purl"].startswith("pkg:generic/python@")]
    assert [c["version"] for c in python] == [
        next(v for n, v, _ in debs if n == "python3.11-minimal").split("-")[0]
    ]
