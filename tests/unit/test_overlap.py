"""The install order that decides which distribution's bytes a shared path gets."""

from __future__ import annotations

from pathlib import Path

from layerforge.builder.overlap import install_order


def dist(site: Path, name: str, *requires: str) -> None:
    info = site / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    lines = [f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"]
    lines += [f"Requires-Dist: {r}\n" for r in requires]
    (info / "METADATA").write_text("".join(lines))


def test_dependencies_first_then_by_name(tmp_path: Path) -> None:
    dist(tmp_path, "aa-libs-cu13", "zz-libs-base>=1")
    dist(tmp_path, "zz-libs-base")
    dist(tmp_path, "Middle_Thing")
    assert install_order(tmp_path, "3.11") == ["middle-thing", "zz-libs-base", "aa-libs-cu13"]


def test_markers_are_evaluated_for_the_target(tmp_path: Path) -> None:
    """A requirement only on Windows or on an older Python is no edge; an extra's is."""
    dist(tmp_path, "a", 'b; sys_platform == "win32"', 'c; python_version < "3.9"')
    dist(tmp_path, "b")
    dist(tmp_path, "c")
    dist(tmp_path, "d", 'e; extra == "gpu"')
    dist(tmp_path, "e")
    assert install_order(tmp_path, "3.11") == ["a", "b", "c", "e", "d"]


def test_a_cycle_is_broken_by_name(tmp_path: Path) -> None:
    dist(tmp_path, "x", "y")
    dist(tmp_path, "y", "x")
    dist(tmp_path, "w", "x")
    assert install_order(tmp_path, "3.11") == ["x", "w", "y"]


def test_requirements_on_distributions_not_installed_are_ignored(tmp_path: Path) -> None:
    dist(tmp_path, "b", "not-here", "a")
    dist(tmp_path, "a")
    assert install_order(tmp_path, "3.11") == ["a", "b"]
