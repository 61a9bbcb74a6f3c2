"""Conflicts with baked pins, found by a free resolution and worded from the wheels' metadata
(uv and a PEP 503 index of tiny wheels on disk)."""

from __future__ import annotations

from pathlib import Path

import pytest

from layerforge.errors import ResolveError
from layerforge.lock.conflicts import Conflict, parse_annotated
from layerforge.lock.resolve import resolve
from layerforge.manifest import Project, load
from tests.wheelkit import make_index, make_wheel


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("index")
    wheels = [
        make_wheel(root / "w", "alpha", "1.0"),
        make_wheel(root / "w", "alpha", "2.0"),
        make_wheel(root / "w", "beta", "2.0", requires=("alpha>=2",)),
        make_wheel(root / "w", "gamma", "1.0"),
    ]
    return make_index(root, wheels)


def project(tmp: Path, index: Path, body: str) -> Project:
    head = f'[project]\nname = "t"\nindex_url = "{index.as_uri()}"\n'
    (tmp / "layerforge.toml").write_text(head + body)
    return load(tmp / "layerforge.toml")


BASE = '[bases.cpu]\nfrom = "rootfs:."\nrequirements = ["alpha==1.0"]\n'


def test_a_group_and_a_service_blocked_by_a_base_pin_are_both_reported(
    tmp_path: Path, index: Path
) -> None:
    body = (
        BASE + 'runtime = { llm = ["beta"] }\n'
        '[services.api]\nbase = "cpu"\nrequirements = ["beta", "gamma"]\n'
    )
    with pytest.raises(ResolveError) as info:
        resolve(project(tmp_path, index, body), None)
    text = str(info.value)
    line = "baked pin alpha==1.0 (bases.cpu) blocks alpha>=2, required by beta"
    assert text.count(line) == 2, text
    assert "services.api (with the pins of cpu)" in text
    assert "bases.cpu.runtime.llm" in text
    assert "host the group or node on a base that does not bake it" in text
    assert info.value.exit_code == 2


def test_a_group_line_against_a_pin_names_the_group() -> None:
    conflict = Conflict("alpha==1.0", "bases.cpu", "alpha>=2", "bases.cpu.runtime.llm", ())
    assert conflict.line() == (
        "baked pin alpha==1.0 (bases.cpu) blocks alpha>=2, required by bases.cpu.runtime.llm"
    )
    chained = Conflict("g==1", "bases.b", "g 2.0", "alpha", ("top", "app"))
    assert chained.line().endswith("required by alpha (via top <- app)")


def test_annotations_are_read_as_uv_writes_them() -> None:
    text = (
        "alpha==1.0\n    # via top\n"
        "beta==2.0 ; python_version >= '3'\n    # via\n    #   -r requirements.in\n    #   Alpha\n"
        "top==1.0\n    # via -r requirements.in\n"
    )
    versions, via = parse_annotated(text)
    assert versions == {"alpha": "1.0", "beta": "2.0", "top": "1.0"}
    assert via == {
        "alpha": ["top"],
        "beta": ["-r requirements.in", "alpha"],
        "top": ["-r requirements.in"],
    }
