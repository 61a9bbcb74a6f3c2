"""Issue 13 item 4: a requirement change in a tier below a ``compile_bytecode`` tier does not
install, compile and compress that tier again: its bytecode depends on the interpreter (the
OS, system and venv layers), not on the Python distributions of the tiers below."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from layerforge import proc
from layerforge.cli import main
from layerforge.oci.layout import Store
from tests.conftest import require_tools
from tests.wheelkit import make_wheel

pytestmark = pytest.mark.integration

MANIFEST = """
[project]
name = "pyckey"
python = "3.11"
find_links = ["wheels"]

[bases.os]
from = {{ debootstrap = "bookworm" }}

[bases.mid]
from = "os"
requirements = [{mid}]

[bases.top]
from = "mid"
compile_bytecode = true
requirements = ["lf13_top"]
verify = ["import lf13_top, lf13_mid"]
"""


def build(project: Path, cache: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """Lock and build; the tasks started."""
    common = ["-f", str(project), "--cache-dir", str(cache)]
    assert main(["lock", *common]) == 0
    capsys.readouterr()
    assert main(["build", *common, "--json"]) == 0
    err = capsys.readouterr().err
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    return [str(e["task"]) for e in events if e["event"] == "start"]


def top_layers(project: Path) -> list[str]:
    store = Store.open(project / ".layerforge", create=False)
    return [str(x["digest"]) for x in store.read_json(store.tags()["top:latest"].digest)["layers"]]


def test_parent_requirement_change_keeps_bytecode_layers(
    tmp_path: Path, shared_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_tools("debootstrap", "bwrap")
    cache = tmp_path / "cache"
    cache.mkdir()
    proc.run(["cp", "-al", str(shared_cache / "debootstrap"), str(cache / "debootstrap")])
    project = tmp_path / "p"
    wheels = project / "wheels"
    make_wheel(wheels, "lf13_mid", "1.0")
    make_wheel(wheels, "lf13_extra", "1.0")
    make_wheel(wheels, "lf13_top", "1.0", files={"lf13_top/more.py": b"X = 1\n"})
    manifest = project / "layerforge.toml"
    manifest.write_text(MANIFEST.format(mid='"lf13_mid"'))
    tasks = build(project, cache, capsys)
    assert "bytecode:top" in tasks
    before = top_layers(project)

    manifest.write_text(MANIFEST.format(mid='"lf13_mid", "lf13_extra"'))
    tasks = build(project, cache, capsys)
    assert "install:mid" in tasks and "verify:top" in tasks
    assert "install:top" not in tasks and "bytecode:top" not in tasks
    after = top_layers(project)
    assert after[-1] == before[-1]  # top's own dependency layer, pyc included: the same blob
    assert after[:-1] != before[:-1]  # (on a new mid layer)
