"""Runtime groups: manifest validation, locking on top of baked pins, staleness, the runtime
layer's files and the content key. Resolution runs uv against a local index of tiny wheels."""

from __future__ import annotations

import dataclasses
import json
import tomllib
from pathlib import Path

import pytest

from layerforge.builder import runtime_layer
from layerforge.errors import ManifestError, ResolveError
from layerforge.lock import lockfile
from layerforge.lock.inputs import stale_nodes
from layerforge.lock.lockfile import Lock, LockedGroup, LockedNode, Package, SourcePin
from layerforge.lock.resolve import resolve
from layerforge.lock.runtime import summaries
from layerforge.lock.uv import ResolveOptions
from layerforge.manifest import Project, load
from layerforge.plan import explain, node_inputs
from tests.wheelkit import make_index, make_wheel


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("index")
    wheels = [
        make_wheel(root / "w", "alpha", "1.0"),
        make_wheel(root / "w", "alpha", "2.0"),
        make_wheel(root / "w", "beta", "1.0", requires=("alpha>=1",)),
        make_wheel(root / "w", "beta", "2.0", requires=("alpha>=2",)),
        make_wheel(root / "w", "gamma", "1.0"),
        make_wheel(root / "w", "gamma", "1.1"),
    ]
    return make_index(root, wheels)


def project(tmp: Path, index: Path, body: str, files: dict[str, str] | None = None) -> Project:
    for name, text in (files or {}).items():
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).write_text(text)
    head = f'[project]\nname = "t"\nindex_url = "{index.as_uri()}"\n'
    (tmp / "layerforge.toml").write_text(head + body)
    return load(tmp / "layerforge.toml")


BASE = '[bases.cpu]\nfrom = "rootfs:."\nrequirements = ["alpha==1.0"]\n'


def manifest_error(tmp: Path, body: str, files: dict[str, str] | None = None) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        project(tmp, Path("/nonexistent"), body, files)
    assert info.value.exit_code == 2
    assert info.value.file == str(tmp / "layerforge.toml") or info.value.file
    return info.value


# -- manifest -----------------------------------------------------------------------------------


def test_groups_parse_inline_and_from_a_file(tmp_path: Path, index: Path) -> None:
    p = project(
        tmp_path,
        index,
        BASE + 'runtime = { llm = ["beta"], tools = "req/tools.txt" }\n'
        '[services.api]\nbase = "cpu"\nruntime = { extra = ["gamma"] }\n',
        {"req/tools.txt": "gamma>=1  # comment\n"},
    )
    cpu, api = p.nodes["cpu"], p.nodes["api"]
    assert [(g.name, g.requirements.lines) for g in cpu.runtime] == [
        ("llm", ("beta",)),
        ("tools", ("gamma>=1",)),
    ]
    assert [g.name for g in api.runtime] == ["extra"]
    assert cpu.runtime[1].requirements.files == ((tmp_path / "req/tools.txt").resolve(),)


def test_bad_group_name_names_the_key(tmp_path: Path) -> None:
    err = manifest_error(tmp_path, BASE + 'runtime = { LLM = ["beta"] }\n')
    assert err.key == "bases.cpu.runtime"
    assert "'LLM' is not a valid runtime group name" in str(err)


def test_invalid_requirement_line_names_the_group(tmp_path: Path) -> None:
    err = manifest_error(tmp_path, BASE + 'runtime = { llm = ["beta >>> 2"] }\n')
    assert err.key == "bases.cpu.runtime.llm"
    assert "invalid requirement" in str(err)


def test_empty_group_rejected(tmp_path: Path) -> None:
    err = manifest_error(tmp_path, BASE + "runtime = { llm = [] }\n")
    assert err.key == "bases.cpu.runtime.llm" and "no requirements" in str(err)


def test_runtime_pin_against_an_ancestors_baked_pin_names_both_sides(tmp_path: Path) -> None:
    err = manifest_error(
        tmp_path,
        BASE + '[services.api]\nbase = "cpu"\nruntime = { llm = ["alpha>=2"] }\n',
    )
    assert err.key == "services.api.runtime.llm"
    assert "'alpha>=2'" in str(err) and "bases.cpu" in str(err) and "alpha==1.0" in str(err)


def test_a_childs_baked_pin_against_an_inherited_group_is_caught(tmp_path: Path) -> None:
    err = manifest_error(
        tmp_path,
        '[bases.cpu]\nfrom = "rootfs:."\nruntime = { llm = ["gamma>=1.1"] }\n'
        '[services.api]\nbase = "cpu"\nrequirements = ["gamma==1.0"]\n',
    )
    assert err.key == "bases.cpu.runtime.llm"
    assert "services.api" in str(err) and "gamma==1.0" in str(err)


def test_a_group_name_is_declared_once_per_chain(tmp_path: Path) -> None:
    err = manifest_error(
        tmp_path,
        BASE + 'runtime = { llm = ["beta"] }\n'
        '[services.api]\nbase = "cpu"\nruntime = { llm = ["gamma"] }\n',
    )
    assert err.key == "services.api.runtime.llm" and "already declared by bases.cpu" in str(err)


# -- lock ---------------------------------------------------------------------------------------


FLEET = (
    BASE + 'runtime = { llm = ["beta"] }\n'
    '[services.api]\nbase = "cpu"\nrequirements = ["gamma==1.0"]\n'
    '[services.bare]\nbase = "cpu"\n'
)


def test_group_is_resolved_on_top_of_the_baked_pins(tmp_path: Path, index: Path) -> None:
    p = project(tmp_path, index, FLEET)
    lock = resolve(p, None)
    cpu = lock.nodes["cpu"]
    assert [x.pin for x in cpu.packages] == ["alpha==1.0"]
    (llm,) = cpu.runtime
    # beta 2.0 needs alpha>=2, which would move the baked alpha: beta 1.0 it is, alpha not again
    assert [x.pin for x in llm.packages] == ["beta==1.0"]
    # services whose baked packages the group does not touch use their base's entry
    assert lock.nodes["api"].runtime == ()
    assert lock.nodes["bare"].runtime == ()
    rows = {(r.node, r.group): r for r in summaries(p, lock)}
    assert rows["bare", "llm"].declared_by == "bases.cpu"
    assert rows["bare", "llm"].distributions == 1
    # round trip through the TOML file, sorted and exact
    text = lockfile.dumps(lock)
    assert lockfile.loads(text) == lock
    assert tomllib.loads(text)["nodes"]["cpu"]["runtime"]["llm"]["packages"][0]["name"] == "beta"
    assert stale_nodes(p, lock) == []


def test_a_group_change_is_stale_alone_and_keeps_baked_pins(tmp_path: Path, index: Path) -> None:
    p = project(tmp_path, index, FLEET)
    lock = resolve(p, None)
    p2 = project(tmp_path, index, FLEET.replace('["beta"]', '["beta", "gamma"]'))
    assert stale_nodes(p2, lock) == ["cpu"]  # the node holding an entry for llm
    lock2 = resolve(p2, lock)
    assert lock2.nodes["cpu"].inputs == lock.nodes["cpu"].inputs  # baked side untouched
    assert lock2.nodes["cpu"].packages == lock.nodes["cpu"].packages
    assert [x.pin for x in lock2.nodes["cpu"].runtime[0].packages] == ["beta==1.0", "gamma==1.1"]
    # api bakes gamma==1.0, which the group would install: its own entry, resolved against it
    assert [x.pin for x in lock2.nodes["api"].runtime[0].packages] == ["beta==1.0"]
    assert lock2.nodes["bare"].runtime == ()
    assert stale_nodes(p2, lock2) == []
    # an entry that no longer belongs to the manifest is stale as well
    extra = LockedGroup("gone", "sha256:0")
    nodes = {**lock2.nodes, "bare": dataclasses.replace(lock2.nodes["bare"], runtime=(extra,))}
    assert stale_nodes(p2, dataclasses.replace(lock2, nodes=nodes)) == ["bare"]


def test_a_group_that_cannot_sit_on_the_baked_pins_names_both(tmp_path: Path, index: Path) -> None:
    p = project(tmp_path, index, BASE + 'runtime = { llm = ["beta==2.0"] }\n')
    with pytest.raises(ResolveError) as info:
        resolve(p, None)
    message = str(info.value)
    assert "bases.cpu.runtime.llm" in message and "baked in bases.cpu" in message


def test_unchanged_groups_are_not_resolved_again(tmp_path: Path, index: Path) -> None:
    p = project(tmp_path, index, FLEET)
    lock = resolve(p, None)
    # a fake entry with the right inputs is kept as is (no uv run would produce it)
    fake = dataclasses.replace(lock.nodes["cpu"].runtime[0], packages=())
    nodes = {**lock.nodes, "cpu": dataclasses.replace(lock.nodes["cpu"], runtime=(fake,))}
    again = resolve(p, dataclasses.replace(lock, nodes=nodes))
    assert again.nodes["cpu"].runtime == (fake,)
    upgraded = resolve(p, dataclasses.replace(lock, nodes=nodes), ResolveOptions(upgrade=True))
    assert upgraded.nodes["cpu"].runtime[0].packages != ()


# -- image: layer files, entrypoint, content key ------------------------------------------------


def pkg(name: str, version: str) -> Package:
    return Package(name, version, f"{name}-{version}-py3-none-any.whl", "u", name[0] * 64, 10)


def test_runtime_layer_carries_pins_and_launcher_not_wheels() -> None:
    locked = LockedNode("sha256:1", (pkg("alpha", "1.0"),), runtime=(
        LockedGroup("llm", "sha256:2", (pkg("beta", "1.0"), pkg("delta", "3"))),
    ))  # fmt: skip
    entries = {e.path: e for e in runtime_layer.runtime_entries(locked, "3.11")}
    pins = (entries["opt/layerforge/runtime/llm.txt"].data or b"").decode().splitlines()
    assert [x for x in pins if not x.startswith("#")] == [
        f"beta==1.0 --hash=sha256:{'b' * 64}",
        f"delta==3 --hash=sha256:{'d' * 64}",
    ]
    doc = json.loads(entries["opt/layerforge/runtime/llm.json"].data or b"")
    assert [w["filename"] for w in doc["wheels"]] == [
        "beta-1.0-py3-none-any.whl",
        "delta-3-py3-none-any.whl",
    ]
    package = "opt/venv/lib/python3.11/site-packages/layerforge_runtime"
    assert entries[f"{package}/__init__.py"].data == runtime_layer.launcher_source()
    assert {p for p in entries if p.startswith(package)} == {
        f"{package}/__init__.py",
        f"{package}/__main__.py",
        f"{package}/wheel.py",
        f"{package}/cacert.pem",
    }
    assert entries["opt/venv/bin/layerforge-runtime"].mode == 0o755
    assert not any(p.endswith(".whl") for p in entries)
    assert runtime_layer.runtime_entries(LockedNode("sha256:1"), "3.11") == []


def test_launcher_imports_only_the_standard_library() -> None:
    import ast
    import sys

    for name, source in runtime_layer.launcher_files().items():
        if not name.endswith(".py"):
            continue
        tree = ast.parse(source)
        names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
                 for a in n.names}  # fmt: skip
        names |= {
            (n.module or "").split(".")[0]
            for n in ast.walk(tree)
            if isinstance(n, ast.ImportFrom) and n.level == 0
        }
        assert names - {"__future__", "layerforge_runtime"} <= set(sys.stdlib_module_names)


def test_entrypoint_is_the_launcher_where_groups_are_declared(tmp_path: Path, index: Path) -> None:
    p = project(
        tmp_path,
        index,
        FLEET + 'entrypoint = ["tini", "--"]\n[services.plain]\nbase = "cpu"\nentrypoint = []\n',
    )
    assert runtime_layer.entrypoint(p.nodes["cpu"]) == list(runtime_layer.ENTRYPOINT)
    assert runtime_layer.entrypoint(p.nodes["api"]) is None  # inherits the base's config
    assert runtime_layer.entrypoint(p.nodes["bare"]) == ["tini", "--"]
    assert runtime_layer.entrypoint(p.nodes["plain"]) == []


def test_a_runtime_pin_changes_the_key_but_not_the_packages(tmp_path: Path, index: Path) -> None:
    p = project(tmp_path, index, FLEET)
    source = SourcePin("rootfs", "os", (), "sha256:os")
    cpu = LockedNode("sha256:1", (pkg("alpha", "1.0"),), source,
                     (LockedGroup("llm", "sha256:2", (pkg("beta", "1.0"),)),))  # fmt: skip
    moved = dataclasses.replace(cpu, runtime=(LockedGroup("llm", "sha256:3", (pkg("beta", "2"),)),))
    a = node_inputs(p, Lock("3.11", "x", {"cpu": cpu}), p.nodes["cpu"], None, None)
    b = node_inputs(p, Lock("3.11", "x", {"cpu": moved}), p.nodes["cpu"], None, None)
    assert a.key != b.key
    assert a.doc["packages"] == b.doc["packages"]  # the dependency layers' inputs
    assert explain(b, a, None, p) == ["runtime group pins changed (runtime layer only)"]
    none = dataclasses.replace(cpu, runtime=())
    assert "runtime" not in node_inputs(p, Lock("3.11", "x", {"cpu": none}), p.nodes["cpu"],
                                        None, None).doc  # fmt: skip


# -- export -------------------------------------------------------------------------------------


def test_dockerfile_export_carries_the_same_pins_and_launcher(tmp_path: Path, index: Path) -> None:
    from layerforge.export import EXPORTERS, ExportOptions, make_context

    p = project(tmp_path, index, FLEET.replace('from = "rootfs:."', 'from = "python:3.11-slim"'))
    lock = resolve(p, None)
    nodes = {**lock.nodes}
    nodes["cpu"] = dataclasses.replace(
        nodes["cpu"], source=SourcePin("rootfs", "os", (), "sha256:" + "a" * 64)
    )
    lock = dataclasses.replace(lock, nodes=nodes)
    options = ExportOptions(
        dockerfiles=tmp_path / "docker",
        bake_file=tmp_path / "docker-bake.hcl",
        workflow=tmp_path / "wf.yml",
        repo_root=tmp_path,
    )
    files = {
        f.path.relative_to(tmp_path).as_posix(): f
        for f in EXPORTERS["dockerfiles"].render(make_context(p, lock, options))
    }
    layer = {
        e.path: e.data for e in runtime_layer.runtime_entries(lock.nodes["cpu"], "3.11") if e.data
    }
    assert (
        files["docker/cpu/runtime/pins/llm.txt"].content == layer["opt/layerforge/runtime/llm.txt"]
    )
    assert files["docker/cpu/runtime/layerforge_runtime/__init__.py"].content == (
        runtime_layer.launcher_source()
    )
    assert files["docker/cpu/runtime/layerforge-runtime"].mode == 0o755
    text = files["docker/cpu/Dockerfile"].content.decode()
    copies = [line for line in text.splitlines() if line.startswith("COPY")]
    assert copies == [
        "COPY docker/cpu/runtime/pins/llm.json docker/cpu/runtime/pins/llm.txt "
        "/opt/layerforge/runtime/",
        "COPY docker/cpu/runtime/layerforge_runtime/__init__.py "
        "docker/cpu/runtime/layerforge_runtime/__main__.py "
        "docker/cpu/runtime/layerforge_runtime/cacert.pem "
        "docker/cpu/runtime/layerforge_runtime/wheel.py "
        "/opt/venv/lib/python3.11/site-packages/layerforge_runtime/",
        "COPY docker/cpu/runtime/layerforge-runtime /opt/venv/bin/",
    ]
    assert 'ENTRYPOINT ["/opt/venv/bin/layerforge-runtime", "exec", "--"]' in text
    assert "beta" not in text  # the group is not installed
    ignore = files["docker/cpu/Dockerfile.dockerignore"].content.decode().splitlines()
    assert "!docker/cpu/runtime/pins/llm.txt" in ignore
    assert "!docker/cpu/runtime/layerforge-runtime" in ignore
    assert "docker/bare/runtime/pins/llm.txt" not in files  # inherits its base's files


def test_a_child_layer_writes_only_what_differs_from_its_base(tmp_path: Path, index: Path) -> None:
    p = project(tmp_path, index, FLEET.replace('["beta"]', '["beta", "gamma"]'))
    lock = resolve(p, None)

    def paths(name: str) -> set[str]:
        entries, label = runtime_layer.layer_for(lock, p, name, "3.11")
        assert not entries or label.startswith("layerforge: runtime groups (llm)")
        return {e.path for e in entries if e.kind == "file"}

    assert paths("cpu") == {
        "opt/layerforge/runtime/llm.txt",
        "opt/layerforge/runtime/llm.json",
        "opt/venv/lib/python3.11/site-packages/layerforge_runtime/__init__.py",
        "opt/venv/lib/python3.11/site-packages/layerforge_runtime/__main__.py",
        "opt/venv/lib/python3.11/site-packages/layerforge_runtime/wheel.py",
        "opt/venv/lib/python3.11/site-packages/layerforge_runtime/cacert.pem",
        "opt/venv/bin/layerforge-runtime",
    }
    # api bakes gamma 1.0, so its llm differs (beta only): new pins, the launcher is inherited
    assert paths("api") == {"opt/layerforge/runtime/llm.txt", "opt/layerforge/runtime/llm.json"}
    assert paths("bare") == set()  # same group as its base: no runtime layer at all
    from layerforge.report.sizes import layer_kind

    assert layer_kind(runtime_layer.created_by(lock.nodes["cpu"])) == "runtime"


# -- CLI ----------------------------------------------------------------------------------------


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    from layerforge.cli import main

    code = main(list(args))
    return code, capsys.readouterr().out


def test_plan_runtime_and_lock_check_show_groups(
    tmp_path: Path, index: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = project(tmp_path, index, FLEET)
    lock = resolve(p, None)
    cpu = dataclasses.replace(
        lock.nodes["cpu"], source=SourcePin("rootfs", "os", (), "sha256:" + "e" * 64)
    )
    lockfile.write(tmp_path / "layerforge.lock", dataclasses.replace(lock, nodes={**lock.nodes,
                   "cpu": cpu}))  # fmt: skip
    manifest = str(tmp_path / "layerforge.toml")
    code, out = run_cli(capsys, "plan", "-f", manifest, "--json")
    assert code == 0
    rows = json.loads(out)["runtime"]
    assert {(r["node"], r["group"], r["declared_by"], r["distributions"]) for r in rows} == {
        ("cpu", "llm", "bases.cpu", 1),
        ("api", "llm", "bases.cpu", 1),
        ("bare", "llm", "bases.cpu", 1),
    }
    code, out = run_cli(capsys, "runtime", "-f", manifest, "bare", "--json")
    assert code == 0 and [r["node"] for r in json.loads(out)["runtime"]] == ["bare"]
    code, out = run_cli(capsys, "plan", "-f", manifest)
    assert "runtime groups (installed on first use)" in out and "not baked" in out
    assert run_cli(capsys, "lock", "--check", "-f", manifest)[0] == 0
    (tmp_path / "layerforge.toml").write_text(
        (tmp_path / "layerforge.toml").read_text().replace('["beta"]', '["beta", "gamma"]')
    )
    code, _out = run_cli(capsys, "lock", "--check", "-f", manifest, "--json")
    assert code == 2
