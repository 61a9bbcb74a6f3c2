"""The exported Dockerfiles of the example fleet, built by buildah (no Docker here).

`buildah bud --layers` (vfs, chroot isolation, private storage) builds the nodes in
dependency order; every image passes the manifest's verify imports; a second build after a
change to one service's source reuses every base layer and rebuilds only the source layer.

A subset of the fleet (cpu, api, ml) is built: the whole fleet takes ~4.5 minutes on this
machine (vfs copies the root filesystem at every step), over the test budget; gpu and the
other services use exactly the same Dockerfile shapes (child base, service with its own
requirements) and are covered by the unit tests.

buildah 1.28 (Debian bookworm) rejects `COPY --link`, so the files are exported with
`--no-copy-link`. pip inside the build reaches the package index through the host's CA
bundle, given to the build as the optional `pip.conf`/`pip-ca` secrets that the Dockerfiles
declare for exactly this (private indexes, TLS-intercepting proxies).
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
from pathlib import Path

import pytest

from layerforge.cli import main
from layerforge.manifest import load
from tests.conftest import EXAMPLE, require_tools
from tests.integration.test_export_equivalence import normalise
from tests.integration.tools import Buildah, skopeo_raw

pytestmark = pytest.mark.integration

ORDER = ["cpu", "api", "ml"]
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


@pytest.fixture(scope="module")
def built(
    tmp_path_factory: pytest.TempPathFactory, shared_cache: Path
) -> tuple[Path, Buildah, dict[str, str]]:
    require_tools("buildah", "debootstrap")
    root = tmp_path_factory.mktemp("export")
    directory = root / "fleet"
    shutil.copytree(EXAMPLE, directory, ignore=shutil.ignore_patterns(".layerforge"))
    keys = export_dockerfiles(directory, shared_cache)
    buildah = Buildah(root / "buildah")
    secrets = pip_secrets(root)
    logs = {node: bud(buildah, directory, node, keys[node], secrets) for node in ORDER}
    return directory, buildah, logs


def export_dockerfiles(directory: Path, cache: Path, *, again: bool = False) -> dict[str, str]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        args = ["dockerfiles", "-f", str(directory), "--cache-dir", str(cache)]
        code = main(["export", *args, "--no-copy-link", "--json"])
    assert code == 0, buf.getvalue()
    doc = json.loads(buf.getvalue())
    if again:  # a source change rewrites nothing, not even the root filesystem tarball
        assert doc["written"] == []
        assert str(directory / "docker/cpu/rootfs.tar.gz") in doc["unchanged"]
    else:
        assert str(directory / "docker/cpu/rootfs.tar.gz") in doc["written"]
    return {str(k): str(v) for k, v in doc["keys"].items()}


def pip_secrets(root: Path) -> list[str]:
    if not CA_BUNDLE.is_file():
        return []
    conf = root / "pip.conf"
    conf.write_text("[global]\ncert = /run/secrets/pip-ca\n")
    return ["--secret", f"id=pip.conf,src={conf}", "--secret", f"id=pip-ca,src={CA_BUNDLE}"]


def bud(buildah: Buildah, directory: Path, node: str, key: str, secrets: list[str]) -> str:
    docker = directory / "docker" / node
    return buildah(
        "bud",
        "--layers",
        "--format",
        "docker",  # keeps HEALTHCHECK (the OCI config has no field for it)
        "--pull-never",
        "--ignorefile",
        str(docker / "Dockerfile.dockerignore"),
        *secrets,
        "-f",
        str(docker / "Dockerfile"),
        "-t",
        f"{node}:{key}",
        "-t",
        f"{node}:latest",
        str(directory),
    )


def diff_ids(buildah: Buildah, ref: str) -> list[str]:
    out = buildah("inspect", "--type", "image", "--format", "{{.OCIv1.RootFS.DiffIDs}}", ref)
    return re.findall(r"sha256:[0-9a-f]{64}", out)


def test_images_pass_the_verify_imports(built: tuple[Path, Buildah, dict[str, str]]) -> None:
    """Every node's verify statements run in the images (cpu's in api and in ml, which sit
    on the cpu image's layers unchanged -- checked below -- to spare a vfs copy)."""
    directory, buildah, _logs = built
    project = load(directory / "layerforge.toml")
    for image in ("api", "ml"):
        container = buildah("from", "--pull-never", "--quiet", f"{image}:latest").split()[-1]
        env = buildah("run", container, "--", "sh", "-c", "echo $VIRTUAL_ENV; command -v python")
        assert env.split() == ["/opt/venv", "/opt/venv/bin/python"]
        pycache = buildah("run", container, "--", "find", "/opt/venv", "-name", "__pycache__")
        assert pycache.strip() == ""  # cleaned in the same RUN as the install
        if image == "api":
            listing = buildah("run", container, "--", "sh", "-c", "ls /app /app/api")
            assert "main.py" in listing and "tests" not in listing  # its .dockerignore
        for node in ("cpu", image):
            for statement in project.nodes[node].verify:
                argv = (
                    ["sh", "-c", statement[3:].strip()]
                    if statement.startswith("sh:")
                    else ["python", "-c", statement]
                )
                buildah("run", container, "--", *argv)
        buildah("rm", container)


def test_children_sit_on_their_parents_layers(
    built: tuple[Path, Buildah, dict[str, str]],
) -> None:
    _directory, buildah, _logs = built
    cpu = diff_ids(buildah, "cpu:latest")
    for child in ("api", "ml"):
        layers = diff_ids(buildah, f"{child}:latest")
        assert layers[: len(cpu)] == cpu and len(layers) > len(cpu)


def test_source_change_reuses_every_base_layer(
    built: tuple[Path, Buildah, dict[str, str]], shared_cache: Path
) -> None:
    directory, buildah, _logs = built
    before_cpu = diff_ids(buildah, "cpu:latest")
    before_api = diff_ids(buildah, "api:latest")
    main_py = directory / "services/api/api/main.py"
    main_py.write_text(main_py.read_text() + "\nCHANGED = True\n")
    keys = export_dockerfiles(directory, shared_cache, again=True)
    secrets = pip_secrets(directory.parent)
    cpu_log = bud(buildah, directory, "cpu", keys["cpu"], secrets)
    api_log = bud(buildah, directory, "api", keys["api"], secrets)
    steps = [line for line in cpu_log.splitlines() if line.startswith("STEP ")]
    cached = [line for line in cpu_log.splitlines() if "Using cache" in line]
    assert len(cached) == len(steps) - 1  # every step but FROM scratch
    api_steps = [line for line in api_log.splitlines() if line.startswith("STEP ")]
    api_cached = [line for line in api_log.splitlines() if "Using cache" in line]
    assert len(api_cached) == len(api_steps) - 2  # all but FROM and the source COPY
    assert diff_ids(buildah, "cpu:latest") == before_cpu
    after = diff_ids(buildah, "api:latest")
    assert after[:-1] == before_api[:-1] and after[-1] != before_api[-1]
    container = buildah("from", "--pull-never", "--quiet", "api:latest").split()[-1]
    out = buildah(
        "run", container, "--", "python", "-c", "import api.main; print(api.main.CHANGED)"
    )
    assert out.strip().endswith("True")


def test_every_node_config_equals_ours(
    built: tuple[Path, Buildah, dict[str, str]], fleet: Path
) -> None:
    """The configs buildah built from the exported Dockerfiles (each FROM the previous
    export) equal the configs `layerforge build` wrote, field by field (issue 14, item 1)."""
    _directory, buildah, _logs = built
    for node in ORDER:
        inspected = json.loads(buildah("inspect", "--type", "image", f"{node}:latest"))
        theirs = inspected["Docker"]["config"]  # the OCI form drops Healthcheck
        theirs["Labels"] = {
            k: v for k, v in (theirs.get("Labels") or {}).items() if k != "io.buildah.version"
        }
        ours = skopeo_raw(fleet / ".layerforge", f"{node}:latest", config=True)["config"]
        assert normalise(theirs) == normalise(ours), node


def test_other_nodes_built_on_our_parents_equal_ours(
    fleet: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """retrieval and training (the services that install nothing): each exported
    Dockerfile built FROM our parent image (no base built twice), then its config compared
    with ours. (gpu and batch cannot be built on our images: their Dockerfiles install with
    pip, and the venv our builder makes with uv has none; on the exported parents they can.)"""
    root = tmp_path_factory.mktemp("others")
    directory = root / "fleet"
    shutil.copytree(fleet, directory, ignore=shutil.ignore_patterns(".layerforge", "docker"))
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        args = ["dockerfiles", "-f", str(directory), "--no-rootfs", "--no-copy-link"]
        assert main(["export", *args]) == 0, buf.getvalue()
    buildah = Buildah(root / "buildah")
    store = root / "store"  # buildah rejects the '.layerforge' component: a link without it
    store.symlink_to(fleet / ".layerforge")
    project = load(directory / "layerforge.toml")
    for node in ("retrieval", "training"):
        parent = project.nodes[node].parent
        docker = directory / "docker" / node
        buildah(
            "bud", "--layers=false", "--pull-never", "--identity-label=false",
            "--format", "docker", *pip_secrets(root),
            "--build-arg", f"PARENT_IMAGE=oci:{store}:{parent}:latest",
            "--ignorefile", str(docker / "Dockerfile.dockerignore"),
            "-f", str(docker / "Dockerfile"), "-t", f"localhost/{node}-on-ours", str(directory),
        )  # fmt: skip
        inspected = json.loads(buildah("inspect", "--type", "image", f"localhost/{node}-on-ours"))
        ours = skopeo_raw(fleet / ".layerforge", f"{node}:latest", config=True)["config"]
        assert normalise(inspected["Docker"]["config"]) == normalise(ours), node
        buildah("rmi", f"localhost/{node}-on-ours")
