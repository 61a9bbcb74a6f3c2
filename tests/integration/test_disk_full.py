"""A disk that fills up in the middle of a build (the preflight cannot foresee what a run step
writes) is a clear error: which area (store or cache) and where, the free space left, what
to do; exit 1, no traceback, no temporary file left in the store.

On a real 2 MB filesystem: a tmpfs mounted in a private mount namespace (root: ``unshare
--mount``; any other user: a user namespace mapping them to root), nothing mounted on the
host. The base's run step writes 3 MB of random bytes, more than the store's filesystem
holds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from layerforge.sizes import format_size
from tests.conftest import require_tools
from tests.integration.test_source_excludes_store import host_programs
from tests.integration.tiny import tiny_project

pytestmark = pytest.mark.integration

SCRIPT = """
set -e
mount -t tmpfs -o size=2m tmpfs "$MOUNTPOINT"
set +e
"$PYTHON" -m layerforge lock -f "$PROJECT" --store "$MOUNTPOINT/store" --cache-dir "$CACHE" \\
  >"$OUT/lock" 2>&1
echo $? >"$OUT/lock-code"
"$PYTHON" -m layerforge build --no-verify -f "$PROJECT" --store "$MOUNTPOINT/store" \\
  --cache-dir "$CACHE" $JSON >"$OUT/stdout" 2>"$OUT/stderr"
echo $? >"$OUT/code"
"$PYTHON" -c 'import shutil, sys; print(shutil.disk_usage(sys.argv[1]).free)' "$MOUNTPOINT" \\
  >"$OUT/free"
find "$MOUNTPOINT/store" -name '*tmp*' >"$OUT/temporary"
exit 0
"""


def build_on_a_full_disk(tmp_path: Path, *, as_json: bool = False) -> tuple[Path, Path]:
    """(mount point, directory of the outputs) of a build whose store fills up."""
    require_tools("unshare", "mount", "bwrap")
    project = tiny_project(tmp_path / "p")
    host_programs(project / "os", "sh", "head")
    step = 'network = false\nrun = ["head -c 3000000 /dev/urandom >/big"]\n'
    text = (project / "layerforge.toml").read_text()
    (project / "layerforge.toml").write_text(
        text.replace("[bases.base]\n", "[bases.base]\n" + step)
    )
    mountpoint, out, cache = tmp_path / "tmpfs", tmp_path / "out", tmp_path / "cache"
    mountpoint.mkdir()
    out.mkdir()
    namespaces = ["--mount"] if os.geteuid() == 0 else ["--user", "--map-root-user", "--mount"]
    env = {**os.environ, "MOUNTPOINT": str(mountpoint), "OUT": str(out), "PROJECT": str(project),
           "CACHE": str(cache), "PYTHON": sys.executable,
           "JSON": "--json" if as_json else ""}  # fmt: skip
    proc = subprocess.run(
        ["unshare", *namespaces, "sh", "-c", SCRIPT],
        env=env, capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, (
        f"cannot mount a 2 MB tmpfs in a private mount namespace (unshare {' '.join(namespaces)})"
        f": {proc.stderr.strip()}; this test needs root or unprivileged user namespaces"
    )
    assert (out / "lock-code").read_text().strip() == "0", (out / "lock").read_text()
    return mountpoint, out


def test_a_full_disk_names_the_store_its_free_space_and_the_way_out(tmp_path: Path) -> None:
    mountpoint, out = build_on_a_full_disk(tmp_path)
    err = (out / "stderr").read_text()
    assert int((out / "code").read_text()) == 1, err
    assert "Traceback" not in err
    message = " ".join(err.split())
    assert "no space left on the device" in message, err
    free = format_size(int((out / "free").read_text()))
    # no file named (a write() failed): the fullest area is pointed at
    assert f"the store {mountpoint / 'store'} ({free} free, the fullest)" in message, err
    assert f"the cache {tmp_path / 'cache'} (" in message, err
    assert "layerforge gc" in message and "--store" in message and "--cache-dir" in message
    assert (out / "temporary").read_text() == ""  # nothing half-written stays
    assert not list(mountpoint.iterdir())  # and nothing was mounted here on the host


def test_a_full_disk_is_a_json_error_with_json(tmp_path: Path) -> None:
    _mountpoint, out = build_on_a_full_disk(tmp_path, as_json=True)
    err = (out / "stderr").read_text()
    assert int((out / "code").read_text()) == 1, err
    last = err.strip().splitlines()[-1]
    assert '"error": "DiskFullError"' in last and '"exit_code": 1' in last, err
