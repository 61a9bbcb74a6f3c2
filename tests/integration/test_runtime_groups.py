"""A service with a runtime group, built and run by buildah: the group is not in the image,
`layerforge-runtime ensure` installs it from a mounted find-links directory (offline), a
second `ensure` does nothing, `exec` runs the command after ensuring; a new runtime pin
changes the runtime layer only. The exported Dockerfile of the service, built by `buildah
bud` on our base, carries the same launcher and pins.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from layerforge.cli import main
from layerforge.lock import lockfile
from tests.conftest import require_tools
from tests.integration.conftest import build_fleet
from tests.integration.tools import Buildah, skopeo_raw

pytestmark = pytest.mark.integration

MANIFEST = """
[project]
name = "rt"
python = "3.11"

[bases.cpu]
from = { debootstrap = "bookworm" }

[services.api]
base = "cpu"
source = "app"
command = ["python", "-m", "hello"]
runtime = { extra = ["six==SIX"] }
"""


def write_project(directory: Path, six: str) -> None:
    (directory / "app").mkdir(parents=True, exist_ok=True)
    (directory / "app" / "hello.py").write_text("print('hello')\n")
    (directory / "layerforge.toml").write_text(MANIFEST.replace("SIX", six))


@dataclass(frozen=True)
class Built:
    directory: Path
    store: Path
    wheels: Path
    buildah: Buildah

    @property
    def offline(self) -> list[str]:
        return ["-v", f"{self.wheels}:/wheels:ro", "--env", "LAYERFORGE_RUNTIME_FIND_LINKS=/wheels",
                "--env", "LAYERFORGE_RUNTIME_OFFLINE=1"]  # fmt: skip


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, shared_cache: Path) -> Built:
    require_tools("buildah", "debootstrap")
    root = tmp_path_factory.mktemp("runtime")
    directory = root / "rt"
    write_project(directory, "1.17.0")
    build_fleet(directory, shared_cache)
    wheels = root / "wheels"
    download(wheels, "six==1.17.0")
    download(wheels, "six==1.16.0")
    return Built(directory, directory / ".layerforge", wheels, Buildah(root / "buildah"))


def download(wheels: Path, pin: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", pin, "-d", str(wheels)],
        check=True,
        capture_output=True,
        timeout=300,
    )


def test_runtime_group_installs_on_first_use(built: Built, shared_cache: Path) -> None:
    store, bh, offline = built.store, built.buildah, built.offline
    lock = lockfile.read(built.directory / "layerforge.lock")
    (group,) = lock.nodes["api"].runtime
    assert [p.pin for p in group.packages] == ["six==1.17.0"]

    config = skopeo_raw(store, "api:latest", config=True)
    assert config["config"]["Entrypoint"] == ["/opt/venv/bin/layerforge-runtime", "exec", "--"]
    assert config["config"]["Cmd"] == ["python", "-m", "hello"]
    runtime_history = [h for h in config["history"] if "runtime groups" in h["created_by"]]
    assert len(runtime_history) == 1
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["report", "-f", str(built.directory), "--json"]) == 0
    (row,) = json.loads(buf.getvalue())["runtime"]
    assert (row["node"], row["group"], row["distributions"]) == ("api", "extra", 1)
    assert row["size"] == group.packages[0].size > 0

    box = bh.from_oci(store, "api:latest")
    with pytest.raises(AssertionError, match="No module named 'six'"):
        bh.run_in(box, "python", "-c", "import six")
    assert "extra: installed" in bh("run", *offline, box, "--", "layerforge-runtime", "ensure",
                                    "extra")  # fmt: skip
    assert bh.run_in(box, "python", "-c", "import six; print(six.__version__)").strip() == "1.17.0"
    again = bh("run", *offline, box, "--", "python", "-m", "layerforge_runtime", "ensure", "extra")
    assert "extra: already installed" in again
    out = bh("run", *offline, "--env", "LAYERFORGE_RUNTIME_GROUPS=extra", box, "--",
             "layerforge-runtime", "exec", "--", "python", "-m", "hello")  # fmt: skip
    assert "extra: already installed" in out and "hello" in out

    # A new runtime pin: only the runtime layer (and config/manifest) change.
    before = skopeo_raw(store, "api:latest")["layers"]
    write_project(built.directory, "1.16.0")
    build_fleet(built.directory, shared_cache)
    after = skopeo_raw(store, "api:latest")["layers"]
    assert len(before) == len(after)
    changed = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
    assert len(changed) == 1
    assert after[changed[0]]["size"] < 200_000  # pins, launcher and CA bundle (~150 kB)


def test_exported_dockerfile_carries_the_same_launcher(built: Built, shared_cache: Path) -> None:
    directory, bh = built.directory, built.buildah
    args = ["dockerfiles", "-f", str(directory), "--cache-dir", str(shared_cache)]
    assert main(["export", *args, "--no-copy-link"]) == 0
    link = bh.root / "layouts" / "rt-store"  # buildah rejects the '.layerforge' component
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(built.store)
    bh("bud", "--layers=false", "-f", str(directory / "docker/api/Dockerfile"),
       "--build-arg", f"PARENT_IMAGE=oci:{link}:cpu:latest", "-t", "api-exported",
       str(directory))  # fmt: skip
    box = bh("from", "--pull-never", "--quiet", "localhost/api-exported").strip().splitlines()[-1]
    assert "extra: installed" in bh("run", *built.offline, box, "--", "layerforge-runtime",
                                    "ensure", "extra")  # fmt: skip
    pin = lockfile.read(directory / "layerforge.lock").nodes["api"].runtime[0].packages[0]
    version = bh.run_in(box, "python", "-c", "import six; print(six.__version__)").strip()
    assert version == pin.version
