"""Conflicts with baked pins, found by a free resolution and worded from the wheels' metadata
(uv and a PEP 503 index of tiny wheels on disk)."""

from __future__ import annotations

import functools
import http.server
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from layerforge.errors import ResolveError
from layerforge.lock.conflicts import Conflict, parse_annotated
from layerforge.lock.resolve import resolve
from layerforge.manifest import Project, load
from tests.wheelkit import make_index, make_wheel, sha256_of


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


@pytest.fixture
def http_index(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(index URL, served directory): a PEP 503 index over HTTP on 127.0.0.1 whose wheels
    have their METADATA beside them (PEP 658 ``.metadata``)."""
    served = tmp_path / "served"
    wheels = [
        make_wheel(served / "files", "alpha", "1.0"),
        make_wheel(served / "files", "alpha", "2.0"),
        make_wheel(served / "files", "beta", "2.0", requires=("alpha>=2",)),
    ]
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(served))
    )
    base = f"http://127.0.0.1:{server.server_address[1]}"
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as zf:
            meta = next(n for n in zf.namelist() if n.endswith("/METADATA"))
            Path(f"{wheel}.metadata").write_bytes(zf.read(meta))
        name = wheel.name.split("-")[0]
        page = served / "simple" / name / "index.html"
        page.parent.mkdir(parents=True, exist_ok=True)
        with page.open("a") as fh:
            fh.write(
                f'<a href="{base}/files/{wheel.name}#sha256={sha256_of(wheel)}">{wheel.name}</a>\n'
            )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{base}/simple", served
    finally:
        server.shutdown()
        server.server_close()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        del format, args


def test_the_requirement_comes_from_the_index_metadata(
    tmp_path: Path, http_index: tuple[str, Path]
) -> None:
    url, served = http_index
    body = BASE + 'runtime = { llm = ["beta"] }\n'
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "layerforge.toml").write_text(
        f'[project]\nname = "t"\nindex_url = "{url}"\n' + body
    )
    with pytest.raises(ResolveError) as info:
        resolve(load(tmp_path / "p" / "layerforge.toml"), None)
    assert "baked pin alpha==1.0 (bases.cpu) blocks alpha>=2, required by beta" in str(info.value)

    for meta in (served / "files").glob("*.metadata"):  # an index without PEP 658
        meta.unlink()
    with pytest.raises(ResolveError) as info:
        resolve(load(tmp_path / "p" / "layerforge.toml"), None)
    assert "baked pin alpha==1.0 (bases.cpu) blocks alpha 2.0, required by beta" in str(info.value)
