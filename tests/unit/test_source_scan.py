"""layerforge's own state is never part of a source tree or a context, whatever
``.dockerignore`` says: any ``.layerforge`` directory, and the store and cache directories in use
when they lie inside the tree. The exported ``.dockerignore`` files keep it out of Docker's
build context too."""

from __future__ import annotations

from pathlib import Path

from layerforge.export import EXPORTERS, make_context
from layerforge.export.common import ExportOptions
from layerforge.lock import lockfile
from layerforge.manifest import load
from layerforge.sourcetree import scan


def paths(root: Path, *exclude: Path) -> list[str]:
    return [f.path for f in scan(root, exclude).files]


def test_the_store_and_the_caches_in_use_are_never_scanned(tmp_path: Path) -> None:
    root = tmp_path / "project"
    for rel in (
        "app/main.py",
        ".layerforge/index.json",
        "nested/.layerforge/oci-layout",
        "my-store/index.json",
        "my-cache/manifest/0.json",
        "my-cache-notes/keep.txt",
    ):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(rel)
    (root / ".dockerignore").write_text("!.layerforge\n!my-store\n")  # cannot bring them back
    got = paths(root, root / "my-store", tmp_path / "project/my-cache")
    assert got == ["app/main.py", "my-cache-notes/keep.txt"]
    # the same directories named through a symlinked parent are still recognised
    (tmp_path / "alias").symlink_to(root)
    assert paths(root, tmp_path / "alias/my-store", root / "my-cache") == got


def test_exported_dockerignore_keeps_the_store_out(example_copy: Path) -> None:
    project = load(example_copy / "layerforge.toml")
    lock = lockfile.read(example_copy / "layerforge.lock")
    options = ExportOptions(
        dockerfiles=example_copy / "docker",
        bake_file=example_copy / "docker-bake.hcl",
        workflow=example_copy / ".github/workflows/layerforge.yml",
        repo_root=example_copy,
    )
    files = EXPORTERS["dockerfiles"].render(make_context(project, lock, options))
    ignore = next(f for f in files if f.path == example_copy / "docker/api/Dockerfile.dockerignore")
    rules = [r for r in ignore.content.decode().splitlines() if not r.startswith("#")]
    assert rules[-2:] == ["services/api/.layerforge", "services/api/**/.layerforge"]
