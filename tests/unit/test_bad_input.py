"""Issue 10 item 6: each malformed input is a clear error (exit 2, the file and key named, no
traceback), found before anything runs, and nothing is written to the store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from layerforge.cli import main
from layerforge.errors import ManifestError
from layerforge.events import NullReporter
from layerforge.manifest import OSSource, load
from layerforge.oci import media
from layerforge.oci.layout import Descriptor, Store, canonical_json
from layerforge.sources.base import SourceContext
from layerforge.sources.materialize import materialize
from layerforge.sourcetree import scan
from tests.unit.test_ossource import fake_rootfs

BASE = '[project]\nname = "demo"\n{project}\n[bases.cpu]\nfrom = {base_from}\n{base}\n'
SERVICE = '[services.api]\nbase = "cpu"\nsource = "svc"\n{service}\n'


def write(
    root: Path,
    *,
    project: str = "",
    base_from: str = '{ debootstrap = "bookworm" }',
    base: str = "",
    service: str = "",
) -> Path:
    (root / "svc").mkdir(parents=True, exist_ok=True)
    text = BASE.format(project=project, base_from=base_from, base=base)
    text += SERVICE.format(service=service)
    (root / "layerforge.toml").write_text(text)
    return root


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    _, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, err


def refused(
    capsys: pytest.CaptureFixture[str], root: Path, key: str, verb: str = "plan", code: int = 2
) -> str:
    """``verb`` fails with ``code``, naming ``key`` (a dotted key or a file name)."""
    got, err = run(capsys, verb, "-f", str(root), "--cache-dir", str(root / ".cache-lf"))
    assert got == code, err
    assert key in err, err
    assert not (root / ".layerforge").exists()
    return err


# -- files that are not UTF-8 ---------------------------------------------------------------


def test_non_utf8_requirements_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write(tmp_path, base='requirements = "requirements.txt"')
    (root / "requirements.txt").write_bytes(b"six\nnump\xff\xfe\n")
    err = refused(capsys, root, "requirements.txt")
    assert "not UTF-8" in err


def test_non_utf8_included_requirements_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write(tmp_path, base='requirements = "requirements.txt"')
    (root / "requirements.txt").write_text("-r more.txt\n")
    (root / "more.txt").write_bytes(b"\xe9\n")
    err = refused(capsys, root, "more.txt")
    assert "not UTF-8" in err


def test_non_utf8_pyproject(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write(tmp_path, base='requirements = "pyproject.toml"')
    (root / "pyproject.toml").write_bytes(b'[project]\nname = "caf\xe9"\n')
    err = refused(capsys, root, "pyproject.toml")
    assert "not UTF-8" in err


def test_non_utf8_lock(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write(tmp_path)
    (root / "layerforge.lock").write_bytes(b"version = 1\n# \xff\n")
    err = refused(capsys, root, "layerforge.lock")
    assert "not UTF-8" in err


def test_non_utf8_lock_when_locking(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write(tmp_path, base_from='"rootfs:os"')
    (root / "os").mkdir()
    (root / "layerforge.lock").write_bytes(b"version = 1\n# \xff\n")
    refused(capsys, root, "layerforge.lock", verb="lock")


# -- values of the wrong type or out of range ------------------------------------------------

HUGE = "9" * 400 + "TB"


@pytest.mark.parametrize(
    ("where", "line", "key"),
    [
        ("base", f'max_size = "{HUGE}"', "bases.cpu.max_size"),
        ("project", f'layer_threshold = "{HUGE}"', "project.layer_threshold"),
        ("service", f"max_size = {2**63}", "services.api.max_size"),
        ("base", "max_size = true", "bases.cpu.max_size"),
        ("project", "layer_threshold = false", "project.layer_threshold"),
        ("base", 'network = "no"', "bases.cpu.network"),
        ("base", "network = 0", "bases.cpu.network"),
        ("service", 'compile_bytecode = "yes"', "services.api.compile_bytecode"),
        ("project", f"source_date_epoch = {2**63 - 1}", "project.source_date_epoch"),
        ("project", "source_date_epoch = 253402300800", "project.source_date_epoch"),
        ("service", 'workdir = "/../../x"', "services.api.workdir"),
        ("service", 'workdir = "/app/./x"', "services.api.workdir"),
        ("service", 'workdir = "/app//x"', "services.api.workdir"),
        ("project", 'registry = "127.0.0.1:abc/acme"', "project.registry"),
        ("project", 'registry = "127.0.0.1:5000/Acme Corp"', "project.registry"),
        ("project", 'registry = "http://"', "project.registry"),
        ("project", 'registry = ""', "project.registry"),
        ("project", 'registry = "ftp://127.0.0.1/acme"', "project.registry"),
        ("project", 'find_links = ["wheels"]', "project.find_links[0]"),
        ("base", 'system = ["libgomp1", "bad name!"]', "bases.cpu.system"),
    ],
)
def test_bad_value_is_a_manifest_error(
    where: str, line: str, key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write(tmp_path, **{where: line})
    err = refused(capsys, root, key)
    assert f"{root / 'layerforge.toml'}: {key}" in err


def test_bad_debootstrap_package_name_is_found_before_debootstrap_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write(tmp_path, base_from='{ debootstrap = "bookworm", packages = ["python3", "Py 3"] }')
    err = refused(capsys, root, "bases.cpu.from.packages")
    assert "'Py 3'" in err


@pytest.mark.parametrize(
    ("line", "value"),
    [
        ('max_size = "9GB"', 9_000_000_000),
        ("max_size = 1024", 1024),
        ('max_size = "1.5GiB"', 1_610_612_736),
    ],
)
def test_good_sizes_still_parse(line: str, value: int, tmp_path: Path) -> None:

    root = write(tmp_path, base=line)
    assert load(root / "layerforge.toml").nodes["cpu"].max_size == value


@pytest.mark.parametrize(
    "registry", ["127.0.0.1:5000/acme", "registry.example/acme/ml", "acme", "localhost:5000"]
)
def test_good_registries_still_pass(registry: str, tmp_path: Path) -> None:

    root = write(tmp_path, project=f"registry = {registry!r}")
    assert load(root / "layerforge.toml").registry == registry


# -- OS sources that fail: nothing written ---------------------------------------------------


def image_layout(path: Path, tmp: Path, python: str) -> Store:
    """An OCI layout holding one image, tagged 'os:v1', whose root has Python ``python``."""
    rootfs = fake_rootfs(tmp / f"rootfs-{python}", python)
    store = Store.open(path)
    ctx = SourceContext(store, tmp / "cache-src", NullReporter(), python)
    base = materialize(OSSource("rootfs", "x", path=rootfs), ctx, "setup", refresh=False)
    config_bytes = canonical_json({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [x.diff_id for x in base.layers]},
    })  # fmt: skip
    config = store.put_bytes(config_bytes)
    manifest = canonical_json({
        "schemaVersion": 2, "mediaType": media.OCI_MANIFEST,
        "config": {"mediaType": media.OCI_CONFIG, "digest": config, "size": len(config_bytes)},
        "layers": [x.descriptor.to_json() for x in base.layers],
    })  # fmt: skip
    digest = store.put_bytes(manifest)
    store.tag("os:v1", Descriptor(media.OCI_MANIFEST, digest, len(manifest)))
    return store


def blobs(store_root: Path) -> set[str]:
    directory = store_root / "blobs/sha256"
    return {p.name for p in directory.iterdir()} if directory.is_dir() else set()


def test_python_mismatch_imports_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write(tmp_path / "p", base_from='"oci:layout:os:v1"', project='python = "3.11"')
    image_layout(root / "layout", tmp_path, "3.12")
    args = ["lock", "-f", str(root), "--cache-dir", str(tmp_path / "cache")]
    code, err = run(capsys, *args)
    assert code == 2 and "bases.cpu" in err and "3.12" in err
    assert not (root / ".layerforge").exists()
    Store.open(root / ".layerforge")  # an existing store gains no blob either
    code, err = run(capsys, *args)
    assert code == 2 and "3.12" in err
    assert blobs(root / ".layerforge") == set()


def test_missing_oci_tag_creates_no_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write(tmp_path / "p", base_from='"oci:layout:nope"')
    image_layout(root / "layout", tmp_path, "3.11")
    err = refused(capsys, root, "bases.cpu", verb="lock")
    assert "no image tagged 'nope'" in err


def test_unknown_suite_creates_no_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert Path("/usr/share/debootstrap/scripts/bookworm").exists(), "debootstrap is needed"
    root = write(tmp_path / "p", base_from='{ debootstrap = "bookwrom" }')
    err = refused(capsys, root, "bases.cpu", verb="lock")
    assert "did you mean 'bookworm'" in err


def test_unreachable_registry_creates_no_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write(tmp_path / "p", base_from='"127.0.0.1:9/acme/os:v1"')
    got, err = run(capsys, "lock", "-f", str(root), "--cache-dir", str(tmp_path / "cache"))
    assert got == 3 and "127.0.0.1:9" in err
    assert not (root / ".layerforge").exists()


def test_a_failed_lock_keeps_an_existing_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write(tmp_path / "p", base_from='"oci:layout:nope"')
    image_layout(root / "layout", tmp_path, "3.11")
    store = Store.open(root / ".layerforge")
    kept = store.put_bytes(b"kept")
    got, _ = run(capsys, "lock", "-f", str(root), "--cache-dir", str(tmp_path / "cache"))
    assert got == 2
    assert store.has_blob(kept)
    assert json.loads((root / ".layerforge/index.json").read_text())["schemaVersion"] == 2


def test_non_utf8_dockerignore_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "svc").mkdir()
    (tmp_path / "svc/.dockerignore").write_bytes(b"*.log\n\xff\n")
    with pytest.raises(ManifestError) as info:
        scan(tmp_path / "svc")
    assert str(tmp_path / "svc/.dockerignore") in str(info.value)
    assert "not UTF-8" in str(info.value) and info.value.exit_code == 2


def test_unknown_debootstrap_variant_is_found_before_debootstrap_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write(tmp_path, base_from='{ debootstrap = "bookworm", variant = "minimal" }')
    err = refused(capsys, root, "bases.cpu.from.variant")
    assert "'minimal'" in err and "minbase" in err
