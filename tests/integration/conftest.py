"""Integration fixtures: one example fleet built per session, shared by every module."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from layerforge.cli import main
from tests.conftest import EXAMPLE, require_tools
from tests.integration.registry_server import Registry


def build_fleet(directory: Path, cache: Path, *extra: str) -> dict[str, dict[str, object]]:
    """lock (if needed) and build; returns the --json document's images by node."""
    assert main(["lock", "-f", str(directory), "--cache-dir", str(cache)]) == 0
    out = directory / "build.json"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["build", "-f", str(directory), "--cache-dir", str(cache), "--json", *extra])
    assert code == 0, buf.getvalue()
    out.write_text(buf.getvalue())
    doc = json.loads(buf.getvalue())
    return {img["node"]: img for img in doc["images"]}


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory, shared_cache: Path) -> Path:
    require_tools("debootstrap")
    directory = tmp_path_factory.mktemp("fleet") / "fleet"
    shutil.copytree(EXAMPLE, directory, ignore=shutil.ignore_patterns(".layerforge"))
    build_fleet(directory, shared_cache)
    return directory


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A reference `distribution` registry (docker-registry) on 127.0.0.1, one per module."""
    require_tools("docker-registry", "skopeo")
    reg = Registry(tmp_path_factory.mktemp("registry"))
    yield reg
    reg.stop()
