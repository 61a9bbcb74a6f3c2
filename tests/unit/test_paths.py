"""Issue 10 item 4: every path the manifest names stays inside the project directory (after
symlinks) unless ``[project] allow_outside`` lists it, never ``/``; host files never reach a
layer or an error message."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from layerforge.cli import main
from layerforge.errors import ManifestError
from layerforge.manifest import load
from layerforge.sourcetree import scan

SECRET = "root:$6$SECRETHASH:19000:0:99999:7:::"

HEAD = '[project]\nname = "demo"\n{project}\n[bases.cpu]\nfrom = {base_from}\n{base}\n'
SERVICE = '[services.api]\nbase = "cpu"\n{service}\n'


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    """(project directory, a directory next to it holding a host-like secret)."""
    root = tmp_path / "p"
    (root / "svc").mkdir(parents=True)
    (root / "svc/main.py").write_text("print('hi')\n")
    outside = tmp_path / "outside"
    (outside / "etc").mkdir(parents=True)
    (outside / "etc/shadow").write_text(SECRET + "\n")
    (outside / "etc/requirements.txt").write_text("six\n")
    return root, outside


def manifest(
    root: Path,
    *,
    project: str = "",
    base_from: str = '{ debootstrap = "bookworm" }',
    base: str = "",
    service: str = 'source = "svc"',
) -> Path:
    text = HEAD.format(project=project, base_from=base_from, base=base)
    text += SERVICE.format(service=service)
    (root / "layerforge.toml").write_text(text)
    return root / "layerforge.toml"


def refused(path: Path) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        load(path)
    return info.value


def cli_refuses(root: Path, capsys: pytest.CaptureFixture[str], key: str) -> str:
    code = main(["plan", "-f", str(root), "--cache-dir", str(root / ".cache-lf")])
    _, err = capsys.readouterr()
    assert code == 2
    assert "Traceback" not in err and SECRET not in err
    assert key in err and "outside the project directory" in err
    assert "allow_outside" in err  # the fix is named
    assert not (root / ".layerforge").exists()
    return err


def test_source_outside_the_project_is_refused(
    dirs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    root, _ = dirs
    manifest(root, service='source = "../outside/etc"')
    cli_refuses(root, capsys, "services.api.source")


def test_source_through_a_symlink_to_outside_is_refused(
    dirs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    root, outside = dirs
    (root / "innocent").symlink_to(outside / "etc")
    manifest(root, service='source = "innocent"')
    cli_refuses(root, capsys, "services.api.source")


def test_source_and_context_at_the_filesystem_root_are_refused(dirs: tuple[Path, Path]) -> None:
    root, _ = dirs
    err = refused(manifest(root, service='source = "/"'))
    assert err.key == "services.api.source"
    err = refused(manifest(root, base='context = "/"'))
    assert err.key == "bases.cpu.context"


def test_context_outside_the_project_is_refused(
    dirs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    root, _ = dirs
    manifest(root, base='context = "../outside/etc"\nrun = ["cp /context/shadow /leak"]')
    cli_refuses(root, capsys, "bases.cpu.context")


def test_requirements_file_outside_the_project_is_refused(dirs: tuple[Path, Path]) -> None:
    root, _ = dirs
    err = refused(manifest(root, base='requirements = "../outside/etc/requirements.txt"'))
    assert err.key == "bases.cpu.requirements" and "outside the project" in str(err)
    err = refused(manifest(root, service='runtime = { llm = "../outside/etc/requirements.txt" }'))
    assert err.key == "services.api.runtime.llm"


def test_requirements_include_of_a_host_file_is_refused_without_its_content(
    dirs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    root, outside = dirs
    (root / "requirements.txt").write_text(f"six\n-r {outside / 'etc/shadow'}\n")
    manifest(root, base='requirements = "requirements.txt"')
    code = main(["plan", "-f", str(root), "--cache-dir", str(root / ".cache-lf")])
    _, err = capsys.readouterr()
    assert code == 2 and "Traceback" not in err
    assert SECRET not in err and "SECRETHASH" not in err
    assert "requirements.txt: line 2" in err and "outside the project" in err


def test_a_file_that_is_not_a_requirements_file_is_never_quoted(dirs: tuple[Path, Path]) -> None:
    root, _ = dirs
    (root / "config").mkdir()
    (root / "config/db.env").write_text("PASSWORD=hunter2-top-secret\n")
    (root / "config/key.pem").write_text("-----BEGIN PRIVATE KEY-----\nMIIEvQ\n")
    err = refused(manifest(root, base='requirements = "config/db.env"'))
    assert "hunter2" not in str(err) and "line 1" in str(err)
    err = refused(manifest(root, base='requirements = "config/key.pem"'))
    assert "PRIVATE" not in str(err) and "line 1" in str(err)


def test_a_requirements_file_still_quotes_its_bad_line(dirs: tuple[Path, Path]) -> None:
    root, _ = dirs
    (root / "requirements.txt").write_text("six\nnot a requirement!\n")
    err = refused(manifest(root, base='requirements = "requirements.txt"'))
    assert "not a requirement!" in str(err) and "line 2" in str(err)


def test_pyproject_outside_the_project_is_refused(dirs: tuple[Path, Path]) -> None:
    root, outside = dirs
    (outside / "pyproject.toml").write_text('[project]\nname = "x"\ndependencies = ["six"]\n')
    err = refused(manifest(root, base='requirements = "../outside/pyproject.toml"'))
    assert err.key == "bases.cpu.requirements" and "outside the project" in str(err)


def test_find_links_outside_the_project_is_refused(dirs: tuple[Path, Path]) -> None:
    root, _ = dirs
    err = refused(manifest(root, project='find_links = ["../outside/etc"]'))
    assert err.key == "project.find_links[0]" and "outside the project" in str(err)


def test_rootfs_outside_the_project_is_refused(dirs: tuple[Path, Path]) -> None:
    root, _ = dirs
    err = refused(manifest(root, base_from='"rootfs:../outside"'))
    assert err.key == "bases.cpu.from" and "outside the project" in str(err)
    err = refused(manifest(root, base_from='"rootfs:/"'))
    assert err.key == "bases.cpu.from"


def test_oci_layout_outside_the_project_is_allowed(dirs: tuple[Path, Path]) -> None:
    """An OCI layout is an image (like FROM), not files copied into one: not confined."""
    root, outside = dirs
    (outside / "layout").mkdir()
    (outside / "layout/oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    project = load(manifest(root, base_from=f'"oci:{outside / "layout"}:v1"'))
    source = project.nodes["cpu"].os_source
    assert source is not None and source.path == outside / "layout"


def test_allow_outside_lets_a_listed_directory_be_named(dirs: tuple[Path, Path]) -> None:
    root, outside = dirs
    project = load(
        manifest(
            root,
            project='allow_outside = ["../outside"]',
            base='requirements = "../outside/etc/requirements.txt"',
            service='source = "../outside/etc"',
        )
    )
    assert project.nodes["api"].source == outside / "etc"
    assert project.nodes["cpu"].requirements.lines == ("six",)


@pytest.mark.parametrize("allowed", ["/", "..", "../..", "/.."])
def test_allow_outside_never_allows_the_root_or_a_parent_of_the_project(
    dirs: tuple[Path, Path], allowed: str
) -> None:
    root, _ = dirs
    err = refused(manifest(root, project=f"allow_outside = [{allowed!r}]"))
    assert err.key == "project.allow_outside" and "holds the project" in str(err)


def test_allow_outside_must_exist(dirs: tuple[Path, Path]) -> None:
    root, _ = dirs
    err = refused(manifest(root, project='allow_outside = ["../nowhere"]'))
    assert err.key == "project.allow_outside" and "not a directory" in str(err)


def test_confinement_is_checked_on_every_load_with_the_cache(
    dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    """The validation cache remembers the manifest's text; a symlink that changes afterwards
    must still be caught."""
    root, outside = dirs
    (root / "code").mkdir()
    path = manifest(root, service='source = "code"')
    cache = tmp_path / "cache"
    load(path, cache_dir=cache)
    (root / "code").rmdir()
    (root / "code").symlink_to(outside / "etc")
    with pytest.raises(ManifestError) as info:
        load(path, cache_dir=cache)
    assert info.value.key == "services.api.source"


def test_symlinked_directory_in_a_source_ships_as_a_link(dirs: tuple[Path, Path]) -> None:
    """Docker's COPY keeps links as links; a link to a directory is not dropped, and a link
    that points outside the project never pulls host files in."""
    root, outside = dirs
    src = root / "svc"
    (src / "pkg").mkdir()
    (src / "pkg/mod.py").write_text("x = 1\n")
    (src / "alias").symlink_to("pkg")
    (src / "host").symlink_to(outside / "etc")
    (src / "up").symlink_to("../../outside/etc")
    tree = scan(src)
    by_path = {f.path: f for f in tree.files}
    assert by_path["alias"].link == "pkg" and by_path["alias"].mode == 0o777
    assert by_path["host"].link == str(outside / "etc")
    assert by_path["up"].link == "../../outside/etc"
    assert tree.file_map()["alias"] == "777:link:pkg"  # the spelling content keys hash
    assert not [p for p in by_path if "shadow" in p]
    assert set(by_path) == {"main.py", "pkg/mod.py", "alias", "host", "up"}
    assert os.readlink(src / "alias") == "pkg"  # the tree itself is untouched
