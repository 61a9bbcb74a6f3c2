"""A service with a runtime group, built and run by buildah: the group is not in the image,
`layerforge-runtime ensure` installs it from a mounted find-links directory (offline), a
second `ensure` does nothing, `exec` runs the command after ensuring; a new runtime pin
changes the runtime layer only.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from layerforge import lockfile
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


def download(wheels: Path, pin: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", pin, "-d", str(wheels)],
        check=True,
        capture_output=True,
        timeout=300,
    )


def test_runtime_group_installs_on_first_use(tmp_path: Path, shared_cache: Path) -> None:
    require_tools("buildah", "debootstrap")
    directory = tmp_path / "rt"
    write_project(directory, "1.17.0")
    build_fleet(directory, shared_cache)
    store = directory / ".layerforge"
    lock = lockfile.read(directory / "layerforge.lock")
    (group,) = lock.nodes["api"].runtime
    assert [p.pin for p in group.packages] == ["six==1.17.0"]

    config = skopeo_raw(store, "api:latest", config=True)
    assert config["config"]["Entrypoint"] == ["/opt/venv/bin/layerforge-runtime", "exec", "--"]
    assert config["config"]["Cmd"] == ["python", "-m", "hello"]
    runtime_history = [h for h in config["history"] if "runtime groups" in h["created_by"]]
    assert len(runtime_history) == 1

    wheels = tmp_path / "wheels"
    download(wheels, "six==1.17.0")
    bh = Buildah(tmp_path / "buildah")
    box = bh.from_oci(store, "api:latest")
    offline = ["-v", f"{wheels}:/wheels:ro", "--env", "LAYERFORGE_RUNTIME_FIND_LINKS=/wheels",
               "--env", "LAYERFORGE_RUNTIME_OFFLINE=1"]  # fmt: skip
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
    write_project(directory, "1.16.0")
    build_fleet(directory, shared_cache)
    after = skopeo_raw(store, "api:latest")["layers"]
    assert len(before) == len(after)
    changed = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
    assert len(changed) == 1
    assert after[changed[0]]["size"] < 20_000  # pins and launcher, a few kB
