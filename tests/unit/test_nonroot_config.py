"""Issue 14 item 2: the content key names user/writable/expose/healthcheck only when set,
and the image config carries User (numeric), ExposedPorts and Healthcheck."""

from __future__ import annotations

from pathlib import Path

from layerforge.manifest import load
from layerforge.oci.image import ImageSpec, assemble
from layerforge.oci.layout import Store
from layerforge.plan import node_inputs
from tests.unit.test_plan import MANIFEST, plan_for, project_and_lock

NONROOT = ("user", "writable", "expose", "healthcheck")


def test_keys_name_the_settings_only_when_set(tmp_path: Path) -> None:
    project, lock = project_and_lock(tmp_path)
    before = plan_for(project, lock)
    for step in before.values():
        assert not set(NONROOT) & set(step.inputs.doc), step.node
    text = MANIFEST.replace(
        'requirements = ["torch"]', 'requirements = ["torch"]\nuser = "app"\nexpose = [8000]'
    ).replace(
        'command = ["python", "-m", "api"]',
        'command = ["python", "-m", "api"]\nwritable = ["/app/cache"]\n'
        'healthcheck = { command = ["true"], interval = "30s" }',
    )
    (tmp_path / "layerforge.toml").write_text(text)
    changed = load(tmp_path / "layerforge.toml")
    after = plan_for(changed, lock, before)
    cpu = after["cpu"].inputs.doc
    assert cpu["user"] == ["app", 10001, 10001, "/home/app"] and cpu["expose"] == ["8000/tcp"]
    api = after["api"].inputs.doc
    assert "user" not in api  # inherited: in the parent's key
    assert api["writable"] == ["/app/cache"]
    assert api["healthcheck"] == {"Test": ["CMD", "true"], "Interval": 30_000_000_000}
    assert "config changed: user, expose" in after["cpu"].reasons
    assert any("config changed: writable, healthcheck" in r for r in after["api"].reasons)
    assert after["ml"].reasons == ("parent cpu changes",)
    node = changed.nodes["cpu"]
    assert node_inputs(changed, lock, node, None, None).doc == cpu


def test_config_carries_user_ports_and_healthcheck(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store", create=True)
    plain = assemble(store, ImageSpec(0, ["A=1"]), None, (), [])
    assert not {"User", "ExposedPorts", "Healthcheck"} & set(plain.config["config"])
    parent = {"config": {"ExposedPorts": {"9000/udp": {}}, "User": "0"}, "history": []}
    spec = ImageSpec(
        0,
        ["A=1"],
        user="10001:10001",
        exposed_ports=("8000/tcp",),
        healthcheck={"Test": ["CMD", "true"], "Retries": 3},
    )
    inner = assemble(store, spec, parent, (), []).config["config"]
    assert inner["User"] == "10001:10001"
    assert inner["ExposedPorts"] == {"8000/tcp": {}, "9000/udp": {}}
    assert inner["Healthcheck"] == {"Test": ["CMD", "true"], "Retries": 3}
    child = assemble(store, ImageSpec(0, ["A=1"]), {"config": inner, "history": []}, (), [])
    assert child.config["config"]["User"] == "10001:10001"  # inherited
