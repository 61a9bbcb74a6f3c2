"""Ctrl-C during a build: the process stops at once, the programs it started go with it,
and the store stays valid (regression: the running node finished and was tagged first)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import require_tools

pytestmark = pytest.mark.integration

MANIFEST = """
[project]
name = "interrupted"
python = "3.11"

[bases.os]
from = {{ debootstrap = "bookworm" }}
run = ["sleep {marker}"]
"""


def _sleeping(marker: str) -> bool:
    out = subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True, check=False)
    return out.returncode == 0


def test_ctrl_c_stops_a_build_and_its_sandbox(tmp_path: Path, shared_cache: Path) -> None:
    require_tools("debootstrap", "bwrap", "pgrep")
    marker = "2718"  # an unusual number of seconds, to find our sleep among the processes
    (tmp_path / "layerforge.toml").write_text(MANIFEST.format(marker=marker))
    base = [sys.executable, "-m", "layerforge"]
    args = ["-f", str(tmp_path), "--cache-dir", str(shared_cache)]
    subprocess.run([*base, "lock", *args], check=True, capture_output=True)
    build = subprocess.Popen(
        [*base, "build", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while not _sleeping(marker):
            assert build.poll() is None, build.communicate()
            assert time.monotonic() < deadline, "the run step never started"
            time.sleep(0.2)
        build.send_signal(signal.SIGINT)
        # a hang guard, not a timing assert: the run step alone would go on for 45 minutes
        _, err = build.communicate(timeout=60)
    finally:
        if build.poll() is None:
            build.kill()
    assert build.returncode == 130 and "interrupted" in err
    gone = time.monotonic() + 30  # the sandbox goes with it (a bound for a slow machine)
    while _sleeping(marker):
        assert time.monotonic() < gone, "the run step outlived the interrupted build"
        time.sleep(0.2)
    plan = subprocess.run(
        [*base, "plan", *args, "--json"], capture_output=True, text=True, check=True
    )
    steps = {s["node"]: s["status"] for s in json.loads(plan.stdout)["steps"]}
    assert steps == {"os": "build"}  # the store is readable and the node is still to build
    store = tmp_path / ".layerforge"
    assert (store / "oci-layout").is_file()  # lock wrote the OS layers: there is a store
    assert not any(p.name.startswith(".tmp-") for p in store.rglob("*"))
