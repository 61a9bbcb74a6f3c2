"""The example fleet, built for real and read back by tools we did not write.

skopeo opens every image, umoci unpacks it, buildah runs it: the verify imports succeed
inside each image and each service's command starts.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import require_tools
from tests.integration.tools import Buildah, run, skopeo_inspect, skopeo_raw

pytestmark = pytest.mark.integration

NODES = ["cpu", "ml", "gpu", "api", "retrieval", "batch", "training"]


def test_every_image_opens_with_skopeo(fleet: Path) -> None:
    require_tools("skopeo")
    store = fleet / ".layerforge"
    for node in NODES:
        info = skopeo_inspect(store, f"{node}:latest")
        assert info["Architecture"] == "amd64" and info["Os"] == "linux"
        raw = skopeo_raw(store, f"{node}:latest")
        assert raw["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
        config = skopeo_raw(store, f"{node}:latest", config=True)
        layers = [h for h in config["history"] if not h.get("empty_layer")]
        assert len(layers) == len(raw["layers"]) == len(config["rootfs"]["diff_ids"])
        assert "VIRTUAL_ENV=/opt/venv" in config["config"]["Env"]


def test_services_sit_on_their_base_layers(fleet: Path) -> None:
    store = fleet / ".layerforge"
    cpu = skopeo_raw(store, "cpu:latest")["layers"]
    api = skopeo_raw(store, "api:latest")
    assert api["layers"][: len(cpu)] == cpu
    assert len(api["layers"]) == len(cpu) + 1  # only the application layer is new
    assert api["annotations"]["org.opencontainers.image.base.name"].startswith("cpu:lf-")
    ml = skopeo_raw(store, "ml:latest")["layers"]
    batch = skopeo_raw(store, "batch:latest")["layers"]
    assert batch[: len(ml)] == ml and len(batch) == len(ml) + 2  # its extra deps + app


def test_images_unpack_with_umoci(fleet: Path, tmp_path: Path) -> None:
    require_tools("umoci")
    store = fleet / ".layerforge"
    bundle = tmp_path / "bundle"
    run(["umoci", "unpack", "--image", f"{store}:api:latest", str(bundle)])
    rootfs = bundle / "rootfs"
    assert (rootfs / "app/api/main.py").is_file()
    assert (rootfs / "opt/venv/pyvenv.cfg").is_file()
    assert list((rootfs / "opt/venv/lib/python3.11/site-packages").glob("numpy-*.dist-info"))
    shebang = (rootfs / "opt/venv/bin/uvicorn").read_text().splitlines()[0]
    assert shebang == "#!/opt/venv/bin/python"
    assert not (rootfs / "opt/venv/.lock").exists()
    assert not list(rootfs.glob("opt/venv/**/__pycache__"))


def test_images_run_with_buildah(fleet: Path, tmp_path: Path) -> None:
    require_tools("buildah")
    store = fleet / ".layerforge"
    buildah = Buildah(tmp_path / "buildah")
    checks = {
        "api": (["python", "-c", "import api.main; print('api ok')"], "api ok"),
        "retrieval": (["python", "-m", "retrieval", "code", "only"], "a service image holds"),
        "batch": (["python", "-m", "batch"], "mean"),
        "training": (["python", "-m", "training", "--epochs", "1"], "max weight error"),
        "gpu": (
            ["python", "-c", "import safetensors, tokenizers, sklearn; print('gpu ok')"],
            "gpu ok",
        ),
    }
    for node, (argv, expected) in checks.items():
        container = buildah.from_oci(store, f"{node}:latest")
        out = buildah.run_in(container, *argv)
        assert expected in out, out
    container = buildah.from_oci(store, "api:latest")
    out = buildah.run_in(
        container, "sh", "-c", "timeout -s INT 8 uvicorn api.main:app --port 18765 2>&1; true"
    )
    assert "Application startup complete" in out
