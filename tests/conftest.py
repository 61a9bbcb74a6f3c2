"""Shared fixtures. Integration tests use real tools, started here or by the tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "fleet"


def require_tools(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (run scripts/setup.sh)")


@pytest.fixture(scope="session")
def shared_cache() -> Path:
    """OS sources (debootstrap) are cached across test runs, keyed by their inputs."""
    path = Path.home() / ".cache" / "layerforge"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def example_copy(tmp_path: Path) -> Path:
    """A private copy of examples/fleet (without any store)."""
    target = tmp_path / "fleet"
    shutil.copytree(EXAMPLE, target, ignore=shutil.ignore_patterns(".layerforge", "__pycache__"))
    return target
