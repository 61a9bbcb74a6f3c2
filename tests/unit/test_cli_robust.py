"""What a fresh user gets wrong: each mistake is a clear error with the right exit code,
never a traceback, and nothing is accepted silently."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from layerforge.cli import main
from layerforge.lock.lockfile import Lock, LockedNode, Package, dumps
from layerforge.oci import media
from layerforge.oci.layout import Descriptor, Store, canonical_json

MANIFEST = (
    '[project]\nname = "demo"\n[bases.cpu]\nfrom = { debootstrap = "bookworm" }\n'
    'requirements = ["numpy", "six"]\n[services.api]\nbase = "cpu"\n'
)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "p"
    root.mkdir()
    (root / "layerforge.toml").write_text(MANIFEST)
    return root


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def _store_with_image(root: Path, node: str) -> Store:
    store = Store.open(root)
    layer = store.put_bytes(b"layer")
    config = store.put_bytes(canonical_json({"rootfs": {"diff_ids": []}}))
    manifest = canonical_json({
        "schemaVersion": 2, "mediaType": media.OCI_MANIFEST,
        "config": {"mediaType": media.OCI_CONFIG, "digest": config, "size": 1},
        "layers": [{"mediaType": media.OCI_LAYER_GZIP, "digest": layer, "size": 5}],
    })  # fmt: skip
    store.tag(f"{node}:latest", Descriptor(media.OCI_MANIFEST, store.put_bytes(manifest), 1))
    return store


# -- 1. paths that are files where directories are needed, and the reverse ---------------------


@pytest.mark.parametrize("verb", ["plan", "build", "report", "gc", "verify"])
def test_store_that_is_a_file_is_a_usage_error(
    verb: str, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = str(project / "layerforge.toml")
    code, _, err = _run(capsys, verb, "-f", manifest, "--store", manifest)
    assert code == 2
    assert f"--store {manifest} is a file, not a directory" in err
    assert "hint: pass --store DIR" in err


def test_store_below_a_file_names_the_file(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = project / "layerforge.toml"
    code, _, err = _run(capsys, "plan", "-f", str(project), "--store", str(manifest / "s"))
    assert code == 2 and f"{manifest} is a file" in err


def test_cache_dir_that_is_a_file_is_a_usage_error(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = str(project / "layerforge.toml")
    code, _, err = _run(capsys, "build", "-f", manifest, "--cache-dir", manifest, "api")
    assert code == 2
    assert f"--cache-dir {manifest} is a file, not a directory" in err
    assert not (project / ".layerforge").exists()


def test_report_html_creates_missing_directories(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Store.open(project / ".layerforge")
    page = project / "out" / "deeper" / "r.html"
    code, out, _ = _run(capsys, "report", "-f", str(project), "--html", str(page))
    assert code == 0, out
    assert page.read_text().lstrip().lower().startswith("<!doctype html")


def test_report_html_under_a_file_is_a_usage_error(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Store.open(project / ".layerforge")
    page = project / "layerforge.toml" / "r.html"
    code, _, err = _run(capsys, "report", "-f", str(project), "--html", str(page))
    assert code == 2 and "--html" in err and "is a file, not a directory" in err


def test_export_archive_into_a_directory_writes_node_tar(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _store_with_image(project / ".layerforge", "api")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, out, _ = _run(capsys, "export", "archive", "api", "-f", str(project), "-o", str(out_dir))
    assert code == 0
    assert f"wrote {out_dir / 'api.tar'}" in out
    with tarfile.open(out_dir / "api.tar") as tar:
        docker = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert docker[0]["RepoTags"] == ["demo/api:latest"]
    nested = tmp_path / "new" / "dir" / "x.tar"  # missing directories are created
    assert main(["export", "archive", "api", "-f", str(project), "-o", str(nested)]) == 0
    assert nested.is_file()


# -- 2. exit codes ----------------------------------------------------------------------------


@pytest.mark.parametrize("args", [["report"], ["gc"], ["export", "archive", "api", "-o", "x.tar"]])
def test_nothing_built_in_the_store_exits_2(
    args: list[str], project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = _run(capsys, *args, "-f", str(project), "--store", str(empty))
    assert code == 2
    assert f"nothing built in the store {empty}" in err and "layerforge build" in err
    assert list(empty.iterdir()) == []
    assert not (project / "x.tar").exists()


@pytest.mark.parametrize("verb", ["verify", "build"])
def test_unknown_runner_is_rejected_before_anything_runs(
    verb: str, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(capsys, verb, "-f", str(project), "--runner", "nonsense", "api")
    assert code == 2
    assert "'nonsense' is not one of 'bwrap', 'chroot', 'podman'" in err


def test_runner_choices_are_the_sandbox_runners() -> None:
    from layerforge.cli import cli
    from layerforge.sandbox.runner import RUNNERS

    for verb in ("build", "verify"):
        command = cli.commands[verb]
        (param,) = [p for p in command.params if p.name == "runner"]
        assert list(param.type.choices) == sorted(RUNNERS)  # type: ignore[attr-defined]


@pytest.mark.parametrize("jobs", ["0", "-3"])
def test_build_jobs_must_be_positive(
    jobs: str, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(capsys, "build", "-f", str(project), "-j", jobs)
    assert code == 2 and "--jobs" in err and "x>=1" in err


# -- 3. input accepted silently -----------------------------------------------------------------


def _write_lock(project: Path) -> None:
    pkg = Package("numpy", "2.0.0", "numpy.whl", "file:///numpy.whl", "0" * 64, 1)
    lock = Lock("3.11", "x", {"cpu": LockedNode("i", (pkg,)), "api": LockedNode("i")})
    (project / "layerforge.lock").write_text(dumps(lock))


def test_lock_upgrade_package_typo_is_named(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_lock(project)
    before = (project / "layerforge.lock").read_text()
    code, _, err = _run(capsys, "lock", "-f", str(project), "-P", "numpyy")
    assert code == 2
    assert "no locked distribution named 'numpyy'; did you mean 'numpy'?" in err
    assert (project / "layerforge.lock").read_text() == before


def test_lock_upgrade_package_in_requirements_but_not_locked_is_accepted(
    project: Path,
) -> None:
    from layerforge.api import Workspace, load_project
    from layerforge.cli.lock import check_upgrade_packages
    from layerforge.errors import UsageError

    _write_lock(project)
    ws = Workspace(project / "layerforge.toml", project / ".layerforge", project / "cache")
    loaded = load_project(ws)
    # six: in the requirements, not locked; numpy: locked, named in any spelling
    check_upgrade_packages(loaded, ws, ("six", "NumPy", "numpy==2.1", " six "))  # no error
    for refused in ("pandas", "sixx", "numpy-extra"):  # neither locked nor required
        with pytest.raises(UsageError, match=f"no locked distribution named '{refused}'") as info:
            check_upgrade_packages(loaded, ws, ("six", refused))
        assert info.value.exit_code == 2


@pytest.mark.parametrize("flag", [["--upgrade"], ["-P", "numpy"]])
def test_lock_check_cannot_upgrade(
    flag: list[str], project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(capsys, "lock", "-f", str(project), "--check", *flag)
    assert code == 2 and "--check cannot be combined with --upgrade" in err


def test_init_rejects_a_name_images_cannot_have(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(capsys, "init", str(tmp_path / "new"), "--name", "Bad Name!")
    assert code == 2
    assert "--name 'Bad Name!'" in err and "e.g. --name bad-name" in err
    assert not (tmp_path / "new").exists()


def test_init_derives_a_valid_name_from_the_directory(tmp_path: Path) -> None:
    assert main(["init", str(tmp_path / "My Fleet_2!")]) == 0
    text = (tmp_path / "My Fleet_2!" / "layerforge.toml").read_text()
    assert 'name = "my-fleet-2"' in text


@pytest.mark.parametrize("name", ["Bad Name!", "Acme", "a/b", "-x", "x-"])
def test_manifest_project_name_must_be_a_repository_component(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "layerforge.toml").write_text(MANIFEST.replace('"demo"', json.dumps(name)))
    code, _, err = _run(capsys, "plan", "-f", str(tmp_path))
    assert code == 2
    assert "project.name" in err and f"{name!r} is not a valid image repository name" in err


@pytest.mark.parametrize("name", ["acme-ml", "a.b", "a__b", "x1", "a--b"])
def test_valid_project_names_pass(name: str, tmp_path: Path) -> None:
    from layerforge.manifest import load

    (tmp_path / "layerforge.toml").write_text(MANIFEST.replace('"demo"', json.dumps(name)))
    assert load(tmp_path / "layerforge.toml").name == name


# -- 4. messages ------------------------------------------------------------------------------

MESSAGES = {
    "python patch": (
        MANIFEST.replace('name = "demo"', 'name = "demo"\npython = "3.11.4"'),
        ["project.python", "python must be MAJOR.MINOR, not '3.11.4'", "python = '3.11'"],
    ),
    "command string": (
        MANIFEST + 'command = "python -m batch"\n',
        ["services.api.command", "expected a list", 'e.g. ["python", "-m", "batch"]'],
    ),
    "verify string": (
        MANIFEST.replace('requirements = ["numpy", "six"]', 'verify = "import six"'),
        ["bases.cpu.verify", 'e.g. ["import six"]'],
    ),
    "compression": (
        MANIFEST.replace('name = "demo"', 'name = "demo"\ncompression = "xz"'),
        ["project.compression", "'xz' is not one of the allowed values", "'gzip' or 'zstd'"],
    ),
    "service on a service": (
        MANIFEST + '[services.web]\nbase = "api"\n',
        ["services.web.base", "'api' is a service; a service can only sit on a base"],
    ),
}


@pytest.mark.parametrize("case", sorted(MESSAGES))
def test_manifest_messages_say_how_to_fix(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, expected = MESSAGES[case]
    (tmp_path / "layerforge.toml").write_text(text)
    code, _, err = _run(capsys, "plan", "-f", str(tmp_path))
    assert code == 2
    for fragment in expected:
        assert fragment in err, (fragment, err)


def test_manifest_option_at_another_toml_says_where_to_point(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_lock(project)
    code, _, err = _run(capsys, "plan", "-f", str(project / "layerforge.lock"))
    assert code == 2
    assert "project: this key is required" in err
    assert "point -f at layerforge.toml (or its directory)" in err
    (project / "layerforge.toml").write_text("[bases.cpu]\nfrom = 'x:1'\n")
    _, _, err = _run(capsys, "plan", "-f", str(project))
    assert "point -f" not in err and "add a [project] table" in err


@pytest.mark.parametrize(
    ("args", "kind"),
    [
        (["plan", "nosuch"], "ManifestError"),
        (["build", "-j", "0"], "UsageError"),
        (["report", "--store", "{empty}"], "UsageError"),
        (["lock", "--check", "--upgrade"], "UsageError"),
    ],
)
def test_json_mode_errors_are_json(
    args: list[str], kind: str, project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    argv = [a.replace("{empty}", str(tmp_path / "empty")) for a in args]
    code, out, err = _run(capsys, *argv, "-f", str(project), "--json")
    assert code == 2 and out == ""
    doc = json.loads(err.strip().splitlines()[-1])
    assert doc["event"] == "error" and doc["error"] == kind and doc["exit_code"] == 2
    assert doc["message"]


def test_json_manifest_error_carries_file_key_and_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "layerforge.toml").write_text(MANIFEST + 'x = "gpu"\n')
    code, _, err = _run(capsys, "plan", "-f", str(tmp_path), "--json")
    doc = json.loads(err)
    assert code == 2
    assert doc["file"] == str(tmp_path / "layerforge.toml") and doc["key"] == "services.api.x"
    assert "allowed keys here" in doc["hint"]


def test_json_flag_after_double_dash_is_not_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "frobnicate", "--", "--json")
    assert code == 2 and err.startswith("Usage:")


def test_init_into_a_file_is_a_usage_error(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = project / "layerforge.toml"
    for target in (manifest, manifest / "sub"):
        code, _, err = _run(capsys, "init", str(target))
        assert code == 2 and f"{target} is not a directory" in err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["dockerfiles", "-o", "{file}"], "-o/--output {file} is a file, not a directory"),
        (["bake", "-o", "{dir}"], "-o/--output {dir} is a directory, not a file"),
        (["bake", "--dockerfiles", "{file}"], "--dockerfiles {file} is a file"),
        (["github", "-o", "{file}/x.yml"], "{file} is a file, not a directory"),
    ],
)
def test_export_output_of_the_wrong_kind_is_a_usage_error(
    args: list[str], expected: str, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    names = {"{file}": str(project / "layerforge.toml"), "{dir}": str(project)}

    def fill(text: str) -> str:
        for key, value in names.items():
            text = text.replace(key, value)
        return text

    code, _, err = _run(capsys, "export", *map(fill, args), "-f", str(project))
    assert code == 2 and fill(expected) in err, err


def test_an_unexpected_os_error_is_a_message_not_a_traceback(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _store_with_image(project / ".layerforge", "api")
    out = "/proc/self/api.tar"  # its directory exists but cannot hold a temporary file
    code, _, err = _run(capsys, "export", "archive", "api", "-f", str(project), "-o", out)
    assert code == 1 and err.startswith("error: /proc/") and "hint: check that path" in err


def test_tables_written_to_a_pipe_are_wide_enough_for_their_headers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Regression: piped output (CI logs) was cut at 80 columns ('compress…')."""
    from layerforge.cli.options import PIPE_WIDTH, console

    monkeypatch.delenv("COLUMNS", raising=False)
    assert console().width == PIPE_WIDTH
    monkeypatch.setenv("COLUMNS", "90")
    assert console().width == 90
