"""Fixtures shared by the integration tests (defined once here, so that every module that
uses the session-scoped ``fleet`` shares one build)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE, require_tools
from tests.integration.test_fleet import build_fleet


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory, shared_cache: Path) -> Path:
    """The example fleet, built once per test session."""
    require_tools("debootstrap")
    directory = tmp_path_factory.mktemp("fleet") / "fleet"
    shutil.copytree(EXAMPLE, directory, ignore=shutil.ignore_patterns(".layerforge"))
    build_fleet(directory, shared_cache)
    return directory
