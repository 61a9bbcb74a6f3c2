"""Named package indexes without a server: the manifest's checks, the lock format, the
generated pyproject and the uv flags, the grouped install, the export and the launcher's
credentials (the real uv runs are in tests/integration/test_indexes.py)."""

from __future__ import annotations

import base64
from dataclasses import replace
from pathlib import Path

import pytest

from layerforge.builder.python import by_index
from layerforge.errors import ManifestError
from layerforge.export import ExportOptions
from layerforge.export.common import ExportContext
from layerforge.export.dockerfile import requirements
from layerforge.lock import lockfile
from layerforge.lock.inputs import all_inputs, key_doc
from layerforge.lock.lockfile import Lock, LockedGroup, LockedNode, Package
from layerforge.lock.uv import ResolveOptions, compile_argv, install_argv, write_inputs
from layerforge.manifest import Project, load
from layerforge.runtime import launcher

A = "https://a.example/simple"
B = "https://b.example/whl/cu128"

INDEXES = f"""
[[project.index]]
name = "a"
url = "{A}"
default = true

[[project.index]]
name = "pytorch-cu128"
url = "{B}"
explicit = true

[project.sources]
Torch = "pytorch-cu128"
"""


def manifest(tmp: Path, project: str = INDEXES, head: str = "") -> Path:
    path = tmp / "layerforge.toml"
    path.write_text(
        f'[project]\nname = "demo"\n{head}\n{project}\n\n'
        '[bases.cpu]\nfrom = { debootstrap = "bookworm" }\nrequirements = ["torch", "six"]\n'
    )
    return path


def load_error(tmp: Path, project: str, head: str = "") -> ManifestError:
    with pytest.raises(ManifestError) as info:
        load(manifest(tmp, project, head))
    return info.value


def test_indexes_and_sources_are_read(tmp_path: Path) -> None:
    project = load(manifest(tmp_path))
    assert [(i.name, i.url, i.explicit, i.default) for i in project.indexes] == [
        ("a", A, False, True),
        ("pytorch-cu128", B, True, False),
    ]
    assert project.sources == (("torch", "pytorch-cu128"),)


def test_source_naming_an_unknown_index_is_refused(tmp_path: Path) -> None:
    err = load_error(tmp_path, INDEXES.replace('Torch = "pytorch-cu128"', 'torch = "pytorch"'))
    assert err.key == "project.sources.torch"
    assert "no index named 'pytorch'; did you mean 'pytorch-cu128'?" in str(err)


def test_credentials_in_an_index_url_are_refused(tmp_path: Path) -> None:
    err = load_error(tmp_path, INDEXES.replace("https://b.", "https://u:p@b."))
    assert err.key == "project.index[1].url"
    assert "credentials" in str(err)
    assert "UV_INDEX_PYTORCH_CU128_USERNAME" in (err.hint or "")
    assert "u:p" not in str(err) + (err.hint or "")


def test_at_most_one_default_index(tmp_path: Path) -> None:
    err = load_error(tmp_path, INDEXES.replace("explicit = true", "default = true"))
    assert err.key == "project.index"
    assert "'a' and 'pytorch-cu128' both say default = true" in str(err)


def test_index_url_and_a_default_index_conflict(tmp_path: Path) -> None:
    err = load_error(tmp_path, INDEXES, head=f'index_url = "{A}"')
    assert err.key == "project.index_url"


def test_index_names_must_differ_for_uv_variables(tmp_path: Path) -> None:
    twice = INDEXES + f'\n[[project.index]]\nname = "pytorch_cu128"\nurl = "{B}"\n'
    err = load_error(tmp_path, twice)
    assert err.key == "project.index[2].name"
    assert "UV_INDEX_PYTORCH_CU128_USERNAME" in str(err)


def test_unknown_key_in_an_index_lists_the_index_keys(tmp_path: Path) -> None:
    err = load_error(tmp_path, INDEXES.replace("explicit = true", "explicit = true\nurl_ = 1"))
    assert "url_" in str(err)
    assert "name, url, explicit, default" in (err.hint or "")


def test_indexes_feed_the_lock_inputs(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "layerforge.toml").write_text(manifest(tmp_path).read_text().replace(INDEXES, ""))
    without = all_inputs(load(plain / "layerforge.toml"))
    with_indexes = all_inputs(load(manifest(tmp_path)))
    assert without["cpu"] != with_indexes["cpu"]
    moved = tmp_path / "moved"
    moved.mkdir()
    (moved / "layerforge.toml").write_text(manifest(tmp_path).read_text().replace(B, B + "2"))
    assert all_inputs(load(moved / "layerforge.toml"))["cpu"] != with_indexes["cpu"]


def test_lock_records_indexes_and_pinned_index(tmp_path: Path) -> None:
    torch = Package("torch", "2.8.0", "torch.whl", f"{B}/torch.whl", "aa", 1, index="pytorch-cu128")
    six = Package("six", "1.17.0", "six.whl", "https://a.example/six.whl", "bb", 2)
    lock = Lock(
        "3.11",
        "x86_64-manylinux_2_28",
        {"cpu": LockedNode("sha256:1", (six, torch))},
        (("a", A), ("pytorch-cu128", B)),
    )
    text = lockfile.dumps(lock)
    assert f'\n[indexes]\na = "{A}"\npytorch-cu128 = "{B}"\n' in text
    assert text.count("\nindex = ") == 1
    assert 'size = 1\nindex = "pytorch-cu128"\n' in text
    assert lockfile.loads(text) == lock


def test_a_lock_without_indexes_is_unchanged() -> None:
    six = Package("six", "1.17.0", "six.whl", "https://a.example/six.whl", "bb", 2)
    lock = Lock("3.11", "x86_64-manylinux_2_28", {"cpu": LockedNode("sha256:1", (six,))})
    text = lockfile.dumps(lock)
    assert "index" not in text
    assert lockfile.loads(text) == lock
    assert lockfile.loads(text).nodes["cpu"].packages[0].index is None


def test_generated_pyproject_and_compile_flags(tmp_path: Path) -> None:
    project = load(manifest(tmp_path))
    work = tmp_path / "work"
    work.mkdir()
    write_inputs(work, project, ["torch", "six"])
    text = (work / "pyproject.toml").read_text()
    assert 'dependencies = ["torch", "six"]' in text
    assert '[tool.uv.sources]\n"torch" = { index = "pytorch-cu128" }' in text
    assert f'name = "pytorch-cu128"\nurl = "{B}"\nexplicit = true' in text
    assert 'name = "a"' not in text  # the default index goes on the command line
    argv = compile_argv(project, work, ResolveOptions())
    assert argv[3] == "pyproject.toml"
    assert argv[argv.index("--default-index") + 1] == f"a={A}"
    assert "--index-url" not in argv


def test_without_indexes_compile_reads_requirements_in(tmp_path: Path) -> None:
    path = manifest(tmp_path, project="")
    work = tmp_path / "work"
    work.mkdir()
    write_inputs(work, load(path), ["six"])
    assert sorted(p.name for p in work.iterdir()) == ["requirements.in"]
    assert compile_argv(load(path), work, ResolveOptions())[3] == "requirements.in"


def test_install_by_index_group(tmp_path: Path) -> None:
    head = 'find_links = ["wheels"]'
    (tmp_path / "wheels").mkdir()
    project: Project = load(manifest(tmp_path, head=head))
    reqs = tmp_path / "r.txt"
    pinned = install_argv(project, tmp_path / "stage", reqs, "pytorch-cu128")
    assert pinned[pinned.index("--default-index") + 1] == f"pytorch-cu128={B}"
    assert "--find-links" not in pinned
    assert "--index" not in pinned
    default = install_argv(project, tmp_path / "stage", reqs)
    assert default[default.index("--default-index") + 1] == f"a={A}"
    assert f"pytorch-cu128={B}" not in default  # explicit: only for what is pinned to it
    assert "--find-links" in default


def test_packages_are_installed_per_index() -> None:
    def pkg(name: str, index: str | None) -> Package:
        return Package(name, "1", f"{name}.whl", "u", "h", 1, index=index)

    groups = by_index([pkg("z", None), pkg("torch", "t"), pkg("a", None), pkg("x", "s")])
    assert [(k, [p.name for p in v]) for k, v in groups.items()] == [
        (None, ["a", "z"]),
        ("s", ["x"]),
        ("t", ["torch"]),
    ]


def test_launcher_credentials_order_and_netrc(tmp_path: Path) -> None:
    url = "https://b.example/files/torch.whl"
    ours = {
        "LAYERFORGE_RUNTIME_INDEX_PYTORCH_CU128_USERNAME": "me",
        "LAYERFORGE_RUNTIME_INDEX_PYTORCH_CU128_PASSWORD": "pw",
    }
    uv = {"UV_INDEX_PYTORCH_CU128_USERNAME": "uv", "UV_INDEX_PYTORCH_CU128_PASSWORD": "uvpw"}
    netrc = tmp_path / "netrc"
    netrc.write_text("machine b.example login nu password npw\n")
    env = {"NETRC": str(netrc), "HOME": str(tmp_path)}
    assert launcher.index_credentials({**env, **uv, **ours}, "pytorch-cu128", url) == ("me", "pw")
    assert launcher.index_credentials({**env, **uv}, "pytorch-cu128", url) == ("uv", "uvpw")
    assert launcher.index_credentials(env, "pytorch-cu128", url) == ("nu", "npw")
    assert launcher.index_credentials(env, None, "https://c.example/x.whl") is None


def test_launcher_sends_index_credentials_to_the_index_host_only(tmp_path: Path) -> None:
    env = {"UV_INDEX_T_USERNAME": "u", "UV_INDEX_T_PASSWORD": "p", "HOME": str(tmp_path)}
    settings = launcher.Settings(tmp_path, env=env)
    on_index = launcher.Wheel("t", "1", "t.whl", "https://b.example/files/t.whl", "h", 1, "t")
    request = launcher.download_request(settings, on_index, {"t": "https://b.example/simple"})
    token = base64.b64encode(b"u:p").decode()
    assert request.unredirected_hdrs == {"Authorization": f"Basic {token}"}
    elsewhere = launcher.Wheel("t", "1", "t.whl", "https://cdn.example/t.whl", "h", 1, "t")
    request = launcher.download_request(settings, elsewhere, {"t": "https://b.example/simple"})
    assert not request.unredirected_hdrs
    assert not request.headers


def test_exported_requirements_name_every_index(example_copy: Path) -> None:
    manifest = example_copy / "layerforge.toml"
    manifest.write_text(manifest.read_text().replace("[bases.cpu]", INDEXES + "\n[bases.cpu]", 1))
    project = load(manifest)
    lock = lockfile.read(example_copy / "layerforge.lock")
    options = ExportOptions(
        dockerfiles=example_copy / "docker",
        bake_file=example_copy / "docker-bake.hcl",
        workflow=example_copy / "layerforge.yml",
        repo_root=example_copy,
    )
    ctx = ExportContext(project, lock, {}, options)
    reqs = requirements(ctx, project.nodes["cpu"])
    assert f"--index-url {A}" in reqs
    assert f"--extra-index-url {B}" in reqs


def test_runtime_pin_index_is_in_the_node_key() -> None:
    torch = Package("torch", "2.8.0", "torch.whl", "u", "aa", 1)
    plain = LockedNode("sha256:1", (), runtime=(LockedGroup("gpu", "sha256:2", (torch,)),))
    pinned = replace(torch, index="pytorch-cu128")
    named = LockedNode("sha256:1", (), runtime=(LockedGroup("gpu", "sha256:2", (pinned,)),))
    assert key_doc(plain)["runtime"] == {"gpu": [["torch", "2.8.0", "aa"]]}  # as before
    assert key_doc(named) != key_doc(plain)  # GROUP.json changes: so does the image
