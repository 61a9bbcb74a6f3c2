"""The launcher on a real network: which CA bundle it trusts (and says so when verification
fails), the baked bundle itself, and what ``list --json`` says a group needs and whether it can
run here (free disk, a GPU)."""

from __future__ import annotations

import hashlib
import json
import shutil
import ssl
import urllib.error
from pathlib import Path

import pytest

from layerforge import runtime
from layerforge.builder import runtime_layer
from layerforge.errors import ManifestError
from layerforge.lock.inputs import key_doc
from layerforge.lock.lockfile import Lock, LockedGroup, LockedNode, Package, SourcePin
from layerforge.manifest import load
from layerforge.plan import node_inputs
from layerforge.runtime import launcher
from layerforge.runtime.wheel import Target


def paths(cafile: str | None, capath: str | None) -> ssl.DefaultVerifyPaths:
    """What ``ssl.get_default_verify_paths`` says (None: no such file or directory)."""
    return ssl.DefaultVerifyPaths(cafile, capath, "", "", "", "")  # type: ignore[arg-type]


NO_SYSTEM = paths(None, None)


def test_ca_order(tmp_path: Path) -> None:
    files = {}
    for name in ("ssl", "pip", "ours", "system", "baked"):
        files[name] = tmp_path / f"{name}.pem"
        files[name].write_text(f"{name}\n")
    system = paths(str(files["system"]), None)
    env = {
        "SSL_CERT_FILE": str(files["ssl"]),
        "PIP_CERT": str(files["pip"]),
        "LAYERFORGE_RUNTIME_CERT": str(files["ours"]),
    }
    baked = files["baked"]

    def pick(env: dict[str, str], paths: ssl.DefaultVerifyPaths = system) -> tuple[Path, str]:
        ca = launcher.choose_ca(env, paths, baked)
        return ca.path, ca.source

    assert pick(env) == (files["ssl"], "SSL_CERT_FILE")
    del env["SSL_CERT_FILE"]
    assert pick(env) == (files["pip"], "PIP_CERT")
    del env["PIP_CERT"]
    assert pick(env) == (files["ours"], "LAYERFORGE_RUNTIME_CERT")
    assert pick({}) == (files["system"], "the system CA store")
    files["system"].write_text("")  # an empty system bundle is no bundle
    assert pick({}) == (baked, "the CA bundle baked in the image")
    assert pick({}, NO_SYSTEM) == (baked, "the CA bundle baked in the image")
    certs = tmp_path / "certs"
    certs.mkdir()
    assert pick({}, paths(None, str(certs))) == (
        baked,
        "the CA bundle baked in the image",
    )
    (certs / "abcd1234.0").write_text("x")
    assert pick({}, paths(None, str(certs))) == (
        certs,
        "the system CA store",
    )
    # the launcher's own settings carry the choice
    settings = launcher.Settings.from_env({"PIP_CERT": str(files["pip"])})
    assert settings.ca is not None and settings.ca.path == files["pip"]


def test_a_verify_failure_names_the_ca_file_used(tmp_path: Path) -> None:
    exc = urllib.error.URLError(ssl.SSLCertVerificationError("self-signed certificate"))
    baked = launcher.choose_ca({}, NO_SYSTEM)
    advice = launcher._advice(exc, "(none)", baked)
    assert str(launcher.BAKED_CA) in advice and "baked in the image" in advice
    assert "proxy" not in advice
    assert "SSL_CERT_FILE" in advice  # the way to trust another CA
    mine = launcher.choose_ca({"LAYERFORGE_RUNTIME_CERT": str(tmp_path / "ca.pem")}, NO_SYSTEM)
    assert f"{tmp_path / 'ca.pem'} (LAYERFORGE_RUNTIME_CERT)" in launcher._advice(exc, "", mine)


def test_a_ca_file_that_is_not_there_is_a_clear_fetch_error(tmp_path: Path) -> None:
    ca = launcher.choose_ca({"SSL_CERT_FILE": str(tmp_path / "missing.pem")}, NO_SYSTEM)
    with pytest.raises(launcher.FetchError, match=r"SSL_CERT_FILE=.*missing\.pem"):
        ca.context()


def test_the_baked_bundle_is_certifis_and_is_in_the_runtime_layer() -> None:
    data = launcher.BAKED_CA.read_bytes()
    assert hashlib.sha256(data).hexdigest() == runtime.CA_BUNDLE["sha256"]
    assert data.count(b"-----BEGIN CERTIFICATE-----") > 100
    ctx = ssl.create_default_context(cafile=str(launcher.BAKED_CA))
    assert len(ctx.get_ca_certs()) > 100
    pkg = Package("six", "1.0", "six-1.0-py3-none-any.whl", "u", "a" * 64, 1)
    locked = LockedNode("sha256:0", runtime=(LockedGroup("extra", "sha256:1", (pkg,)),))
    files = {e.path: e.data for e in runtime_layer.runtime_entries(locked, "3.11")}
    baked = files[f"opt/venv/lib/python3.11/site-packages/{runtime_layer.MODULE}/cacert.pem"]
    assert baked == data
    # the launcher's files (CA bundle included) feed the content key of a node with groups
    doc = key_doc(locked)
    assert doc["runtime_support"] == runtime.support_digest()
    assert key_doc(LockedNode("sha256:0")) == {}
    assert json.dumps(doc)  # JSON-able


# -- list --json: needs, disk, GPU ---------------------------------------------------------------


def _pins(tmp_path: Path, needs: dict[str, tuple[str, ...]]) -> Path:
    """A pins dir with the groups ``cpu`` (1 MB of wheels) and ``llm`` (10 MB), as baked."""
    groups = []
    for name, size in (("cpu", 1_000_000), ("llm", 10_000_000)):
        pkg = Package(name, "1.0", f"{name}-1.0-py3-none-any.whl", "u", name[0] * 64, size)
        groups.append(LockedGroup(name, "sha256:1", (pkg,)))
    locked = LockedNode("sha256:0", runtime=tuple(groups))
    pins = tmp_path / "pins"
    pins.mkdir()
    for entry in runtime_layer.runtime_entries(locked, "3.11", needs=needs):
        if entry.path.startswith(runtime_layer.PINS_DIR + "/"):
            (pins / Path(entry.path).name).write_bytes(entry.data or b"")
    return pins


def _usage(free: int) -> object:
    def disk_usage(path: str | Path) -> shutil._ntuple_diskusage:
        assert Path(path).exists()
        return shutil._ntuple_diskusage(100 * free, 99 * free, free)

    return disk_usage


def test_list_json_needs_and_disk(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pins = _pins(tmp_path, {"llm": ("gpu",)})
    assert "needs" not in json.loads((pins / "cpu.json").read_text())  # only when declared
    assert json.loads((pins / "llm.json").read_text())["needs"] == ["gpu"]
    settings = launcher.Settings(pins)
    target = Target.directory(tmp_path / "target", "/usr/bin/python3")
    no_gpu = tmp_path / "host"
    (no_gpu / "proc/driver/nvidia").mkdir(parents=True)  # a driver, but no GPU listed
    host = launcher.Host(no_gpu, _usage(20_000_000))  # type: ignore[arg-type]
    rows = {r["group"]: r for r in launcher.group_rows(settings, target, host)}
    assert rows["cpu"] == {
        "group": "cpu",
        "distributions": 1,
        "size": 1_000_000,
        "installed": False,
        "needs": [],
        "disk_needed": 3_000_000,  # unpacked: about 3x the wheel bytes
        "disk_free": 20_000_000,
        "fits_disk": True,
        "gpu": False,
        "can_run": True,
    }
    assert rows["llm"]["needs"] == ["gpu"] and rows["llm"]["fits_disk"] is False
    assert rows["llm"]["can_run"] is False

    gpu = tmp_path / "gpu"
    (gpu / "proc/driver/nvidia/gpus/0000:01:00.0").mkdir(parents=True)
    big = launcher.Host(gpu, _usage(40_000_000))  # type: ignore[arg-type]
    rows = {r["group"]: r for r in launcher.group_rows(settings, target, big)}
    assert rows["llm"]["gpu"] is True and rows["llm"]["can_run"] is True
    dev = tmp_path / "dev-only"
    (dev / "dev").mkdir(parents=True)
    (dev / "dev/nvidiactl").write_text("")
    rows = {r["group"]: r for r in launcher.group_rows(settings, target, launcher.Host(dev))}
    assert rows["llm"]["gpu"] is True

    # an installed group can run whatever the disk says
    (target.state).mkdir(parents=True)
    (target.state / "llm").write_text(launcher.pins_digest(settings, "llm") + "\n")
    tiny = launcher.Host(gpu, _usage(1))  # type: ignore[arg-type]
    rows = {r["group"]: r for r in launcher.group_rows(settings, target, tiny)}
    assert rows["llm"]["installed"] and rows["llm"]["can_run"]
    assert not rows["cpu"]["fits_disk"] and not rows["cpu"]["can_run"]

    # the command line shows the same, JSON and text
    env = {"LAYERFORGE_RUNTIME_DIR": str(pins)}
    capsys.readouterr()
    assert launcher.main(["--target", str(target.purelib), "list", "--json"], env) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {r["group"] for r in doc["groups"]} == {"cpu", "llm"}
    assert {"needs", "disk_free", "fits_disk", "gpu", "can_run"} <= set(doc["groups"][0])
    assert launcher.main(["--target", str(target.purelib), "list"], env) == 0
    assert "llm: 1 distributions, 10000000 bytes, installed, needs gpu" in capsys.readouterr().out


def test_needs_in_the_manifest_reach_group_json_and_the_key(tmp_path: Path) -> None:
    head = '[project]\nname = "t"\n[bases.cpu]\nfrom = "rootfs:."\n'
    (tmp_path / "layerforge.toml").write_text(
        head + 'runtime = { llm = { requirements = ["beta"], needs = ["gpu"] }, cpu = ["gamma"] }\n'
    )
    p = load(tmp_path / "layerforge.toml")
    assert [(g.name, g.requirements.lines, g.needs) for g in p.nodes["cpu"].runtime] == [
        ("cpu", ("gamma",), ()),
        ("llm", ("beta",), ("gpu",)),
    ]
    beta = Package("beta", "1.0", "beta-1.0-py3-none-any.whl", "u", "b" * 64, 10)
    gamma = Package("gamma", "1.0", "gamma-1.0-py3-none-any.whl", "u", "c" * 64, 10)
    groups = (LockedGroup("cpu", "sha256:2", (gamma,)), LockedGroup("llm", "sha256:3", (beta,)))
    cpu = LockedNode("sha256:1", (), SourcePin("rootfs", ".", (), "sha256:os"), groups)
    lock = Lock("3.11", "x", {"cpu": cpu})
    entries, _label = runtime_layer.layer_for(lock, p, "cpu", "3.11")
    files = {e.path: e.data or b"" for e in entries}
    assert json.loads(files["opt/layerforge/runtime/llm.json"])["needs"] == ["gpu"]
    assert "needs" not in json.loads(files["opt/layerforge/runtime/cpu.json"])
    # needs change GROUP.json, so they change the node's key
    with_needs = node_inputs(p, lock, p.nodes["cpu"], None, None)
    (tmp_path / "layerforge.toml").write_text(
        head + 'runtime = { llm = ["beta"], cpu = ["gamma"] }\n'
    )
    plain = load(tmp_path / "layerforge.toml")
    without = node_inputs(plain, lock, plain.nodes["cpu"], None, None)
    assert with_needs.key != without.key and "runtime_needs" not in without.doc

    (tmp_path / "layerforge.toml").write_text(
        head + 'runtime = { llm = { requirements = ["beta"], needs = ["tpu"] } }\n'
    )
    with pytest.raises(ManifestError) as info:
        load(tmp_path / "layerforge.toml")
    assert "bases.cpu.runtime" in str(info.value) and "gpu" in str(info.value)


@pytest.mark.parametrize(
    ("group", "key", "words"),
    [
        ('{ requirements = ["beta"], need = ["gpu"] }', "llm.need", "did you mean 'needs'?"),
        ('{ needs = ["gpu"] }', "llm.requirements", "this key is required"),
        ('{ requirements = ["beta"], needs = ["tpu"] }', "llm.needs.0", "write 'gpu'"),
    ],
)
def test_a_bad_group_table_names_its_key(tmp_path: Path, group: str, key: str, words: str) -> None:
    (tmp_path / "layerforge.toml").write_text(
        f'[project]\nname = "t"\n[bases.cpu]\nfrom = "rootfs:."\nruntime = {{ llm = {group} }}\n'
    )
    with pytest.raises(ManifestError) as info:
        load(tmp_path / "layerforge.toml")
    assert info.value.key == f"bases.cpu.runtime.{key}"
    assert words in str(info.value)
    assert "RuntimeGroupModel" not in str(info.value)
