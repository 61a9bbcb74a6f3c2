"""Issue 14 item 2: `user`, `writable`, `expose` and `healthcheck` in the manifest, the
content key (only when set) and the image config."""

from __future__ import annotations

from pathlib import Path

import pytest

from layerforge.errors import ManifestError
from layerforge.manifest import load
from layerforge.manifest.schema import json_schema

MANIFEST = """
[project]
name = "demo"

[bases.cpu]
from = {{ debootstrap = "bookworm" }}
{cpu}

[bases.ml]
from = "cpu"
{ml}

[services.api]
base = "ml"
{api}
"""


def _write(tmp: Path, cpu: str = "", ml: str = "", api: str = "") -> Path:
    path = tmp / "layerforge.toml"
    path.write_text(MANIFEST.format(cpu=cpu, ml=ml, api=api))
    return path


def _error(tmp: Path, **parts: str) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        load(_write(tmp, **parts))
    assert info.value.exit_code == 2
    return info.value


def test_user_expose_healthcheck_parse_and_inherit(tmp_path: Path) -> None:
    project = load(
        _write(
            tmp_path,
            cpu='user = "app"\nwritable = ["/srv/cache", "/var/tmp/app/"]\nexpose = [8000]',
            api='expose = [8000, "9000/udp"]\n'
            'healthcheck = { command = ["python", "-c", "pass"], interval = "30s", '
            'timeout = "1m30s", start_period = "500ms", retries = 3 }',
        )
    )
    cpu, ml, api = project.nodes.values()
    assert cpu.user is not None
    assert (cpu.user.name, cpu.user.uid, cpu.user.gid, cpu.user.home) == (
        "app", 10001, 10001, "/home/app",
    )  # fmt: skip
    assert not cpu.user.inherited and cpu.user.spec == "10001:10001"
    assert cpu.writable == ("/srv/cache", "/var/tmp/app")
    assert cpu.expose == ("8000/tcp",)
    assert ml.user is not None and ml.user.inherited and ml.user.uid == 10001
    assert ml.writable == () and ml.expose == ()
    assert api.user is not None and api.user.inherited
    assert api.expose == ("8000/tcp", "9000/udp")
    assert api.healthcheck is not None
    assert api.healthcheck.config() == {
        "Test": ["CMD", "python", "-c", "pass"],
        "Interval": 30_000_000_000,
        "Timeout": 90_000_000_000,
        "StartPeriod": 500_000_000,
        "Retries": 3,
    }


def test_user_forms(tmp_path: Path) -> None:
    forms = {
        '"10002"': (None, 10002, 10002, "/home/u10002"),
        "10003": (None, 10003, 10003, "/home/u10003"),
        '"10004:20"': (None, 10004, 20, "/home/u10004"),
        '"root"': ("root", 0, 0, "/root"),
        '"0"': ("root", 0, 0, "/root"),
        '{ name = "svc", uid = 1000, gid = 1001, home = "/srv/svc" }': (
            "svc",
            1000,
            1001,
            "/srv/svc",
        ),
        '{ name = "svc" }': ("svc", 10001, 10001, "/home/svc"),
    }
    for written, want in forms.items():
        project = load(_write(tmp_path, api=f"user = {written}"))
        user = project.nodes["api"].user
        assert user is not None
        assert (user.name, user.uid, user.gid, user.home) == want, written


def test_a_service_sets_its_own_user_over_the_base(tmp_path: Path) -> None:
    project = load(_write(tmp_path, cpu='user = "app"', api='user = "web"'))
    api = project.nodes["api"].user
    assert api is not None and (api.name, api.inherited) == ("web", False)


def test_healthcheck_shell_and_off(tmp_path: Path) -> None:
    project = load(_write(tmp_path, ml='healthcheck = { command = "curl -f localhost" }',
                          api="healthcheck = false"))  # fmt: skip
    ml, api = project.nodes["ml"].healthcheck, project.nodes["api"].healthcheck
    assert ml is not None and ml.config() == {"Test": ["CMD-SHELL", "curl -f localhost"]}
    assert api is not None and api.config() == {"Test": ["NONE"]}


@pytest.mark.parametrize(
    ("part", "key", "words"),
    [
        ('user = "App"', "bases.cpu.user", "not a valid user name"),
        ('user = "app:x"', "bases.cpu.user", "not a valid user"),
        ('user = "-1"', "bases.cpu.user", "not a valid user"),
        ("user = 4294967296", "bases.cpu.user", "uid"),
        ('user = { name = "app", uid = 0 }', "bases.cpu.user", "root"),
        ('user = { home = "rel" }', "bases.cpu.user", "absolute"),
        ('writable = ["cache"]', "bases.cpu.writable", "absolute"),
        ('writable = ["/"]', "bases.cpu.writable", "'/'"),
        ('writable = ["/opt/venv/lib"]', "bases.cpu.writable", "/opt/venv"),
        ('writable = ["/a/../b"]', "bases.cpu.writable", "'..'"),
        ("expose = [0]", "bases.cpu.expose", "port"),
        ('expose = ["80/icmp"]', "bases.cpu.expose", "port"),
        ("healthcheck = true", "bases.cpu.healthcheck", "false"),
        ("healthcheck = { command = [] }", "bases.cpu.healthcheck", "command"),
        ('healthcheck = { command = ["x"], interval = "30" }', "bases.cpu.healthcheck", "30s"),
        ('healthcheck = { command = ["x"], retries = -1 }', "bases.cpu.healthcheck", "retries"),
        ('healthcheck = { command = "a\\nb" }', "bases.cpu.healthcheck", "newline"),
    ],
)
def test_bad_values_are_clear_errors(tmp_path: Path, part: str, key: str, words: str) -> None:
    err = _error(tmp_path, cpu=part)
    assert key in str(err), str(err)
    assert words in str(err), str(err)


def test_schema_documents_the_keys() -> None:
    defs = json_schema()["$defs"]
    for model in ("BaseModelConfig", "ServiceModel"):
        props = defs[model]["properties"]
        assert {"user", "writable", "expose", "healthcheck"} <= set(props), model


def test_unknown_key_in_a_user_or_healthcheck_table(tmp_path: Path) -> None:
    err = _error(tmp_path, cpu='user = { nme = "app" }')
    assert "bases.cpu.user.nme" in str(err) and "did you mean 'name'" in str(err), str(err)
    err = _error(tmp_path, api='healthcheck = { command = ["x"], interval = 5 }')
    assert "services.api.healthcheck.interval" in str(err), str(err)
