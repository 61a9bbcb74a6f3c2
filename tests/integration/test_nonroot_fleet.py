"""Issue 14 item 2 on the example fleet (every image runs as `app`, uid 10001; api exposes
8000 with a health check): what the issue asks buildah to show."""

from __future__ import annotations

import shlex
from pathlib import Path

from tests.conftest import require_tools
from tests.integration.tools import Buildah, skopeo_raw


def test_fleet_config_runs_as_app(fleet: Path) -> None:
    store = fleet / ".layerforge"
    for node in ("cpu", "ml", "gpu", "api", "retrieval", "batch", "training"):
        inner = skopeo_raw(store, f"{node}:latest", config=True)["config"]
        assert inner["User"] == "10001:10001", node
    api = skopeo_raw(store, "api:latest", config=True)["config"]
    assert api["ExposedPorts"] == {"8000/tcp": {}}
    check = api["Healthcheck"]
    assert check["Test"][0] == "CMD" and "/health" in check["Test"][-1]
    assert (check["Interval"], check["Timeout"], check["StartPeriod"], check["Retries"]) == (
        30_000_000_000,
        5_000_000_000,
        10_000_000_000,
        3,
    )


def test_buildah_runs_api_as_app_and_its_health_check_passes(fleet: Path, tmp_path: Path) -> None:
    """buildah run takes the image's User: the uid, the app readable, the declared writable
    path writable, /opt/venv not; then uvicorn serves and the image's own health check
    command succeeds against it."""
    require_tools("buildah")
    store = fleet / ".layerforge"
    buildah = Buildah(tmp_path / "buildah")
    container = buildah.from_oci(store, "api:latest")
    out = buildah.run_in(
        container,
        "sh",
        "-c",
        "id -u; id -un; python -c 'import api.main; print(\"app readable\")'; "
        "touch /app/cache/x && echo cache writable; "
        "touch /opt/venv/x 2>&1 || echo venv refused; touch /app/x 2>&1 || echo app refused",
    )
    lines = out.splitlines()
    assert lines[:2] == ["10001", "app"], out
    assert "app readable" in out and "cache writable" in out, out
    assert "venv refused" in out and "app refused" in out and "Permission denied" in out, out
    test = skopeo_raw(store, "api:latest", config=True)["config"]["Healthcheck"]["Test"][1:]
    health = shlex.join(test)
    script = (
        "uvicorn api.main:app --port 8000 >/tmp/log 2>&1 & "
        f"for i in $(seq 60); do {health} 2>/dev/null && echo healthy && break; sleep 0.5; done; "
        "kill %1; cat /tmp/log"
    )
    out = buildah.run_in(container, "sh", "-c", script)
    assert "healthy" in out.splitlines(), out
