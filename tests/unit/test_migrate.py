"""Issue 15 item 1: ``layerforge init --from PATH`` maps a repository of Dockerfiles, compose
files and requirements files to layerforge.toml plus a migration report with a row for every
instruction (fast: ``--no-lock``; tests/integration/test_migrate.py locks, builds and
verifies the results)."""

from __future__ import annotations

import io
import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
from dockerfile_parse import DockerfileParser

from layerforge.cli import main
from layerforge.manifest import load
from layerforge.migrate.dockerfile import split_shell
from layerforge.migrate.mapping import healthcheck_of, port_of
from tests.migratekit import tiered_fleet, universal_worker


def init_from(root: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, Any]:
    code = main(["init", "--from", str(root), "--os", "debootstrap", "--no-lock", "--json", *extra])
    out, _ = capsys.readouterr()
    return code, json.loads(out) if out.strip() else None


def manifest_of(root: Path) -> dict[str, Any]:
    return tomllib.loads((root / "layerforge.toml").read_text())


def rows_at(doc: Any, file: str, line: int) -> list[dict[str, Any]]:
    return [r for r in doc["rows"] if r["file"] == file and r["line"] == line]


@pytest.mark.parametrize("fixture", [tiered_fleet, universal_worker])
def test_every_instruction_has_a_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fixture: Any
) -> None:
    root = fixture(tmp_path / "repo")
    code, doc = init_from(root, capsys)
    assert code == 0, doc["problems"]
    counted = 0
    for dockerfile in root.rglob("Dockerfile"):
        parser = DockerfileParser(fileobj=io.BytesIO(dockerfile.read_bytes()))
        for ins in parser.structure:
            if ins["instruction"] == "COMMENT":
                continue
            file = dockerfile.relative_to(root).as_posix()
            rows = [
                r
                for r in rows_at(doc, file, ins["startline"] + 1)
                if r["instruction"] == ins["instruction"]
            ]
            want = len(split_shell(ins["value"])) if ins["instruction"] == "RUN" else 1
            assert len(rows) >= want, (file, ins["startline"] + 1, ins["value"])
            counted += 1
    assert counted == (49 if fixture is tiered_fleet else 8)  # instructions, comments aside
    text = (root / "layerforge-migration.md").read_text()
    assert (
        "## Counts" in text and "services/api/Dockerfile" in text
    ) or fixture is not tiered_fleet
    load(root / "layerforge.toml")  # the result is a valid manifest that names real files


def test_tiered_fleet_maps_chain_system_context_and_two_stage_services(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tiered_fleet(tmp_path / "repo")
    code, doc = init_from(root, capsys)
    assert code == 0
    m = manifest_of(root)
    cpu, ml, gpu = m["bases"]["cpu"], m["bases"]["ml"], m["bases"]["gpu"]
    assert cpu["from"] == {"debootstrap": "bookworm"} and m["project"]["python"] == "3.11"
    assert ml["from"] == "cpu" and gpu["from"] == "ml"  # FROM acme/base-cpu:${BASE_TAG}
    assert cpu["system"] == ["gcc", "libc6-dev", "make"]
    # trap 6: the context is read-only, so the build works on a copy
    assert cpu["context"] == "native"
    assert cpu["run"][:2] == [
        "mkdir -p /tmp/native && cp -a /context/. /tmp/native/ && make -C /tmp/native install",
        "ldconfig",
    ]
    assert cpu["verify"] == [
        "import ctypes; assert ctypes.CDLL('libfastmath.so').fm_add(2, 3) == 5"
    ]
    generated = (root / cpu["requirements"]).read_text()
    assert "-r ../requirements/cpu.txt" in generated and "-c ../constraints.txt" in generated
    # the two-stage api: the pip wheel stage's requirements file becomes the service's
    api = m["services"]["api"]
    assert api["base"] == "cpu" and api["requirements"] == "services/api/requirements.txt"
    assert api["source"] == "services/api/app" and api["command"] == ["python", "-m", "api"]
    assert api["env"] == {"LOG_LEVEL": "info"}  # compose environment
    # the --prefix builder, the ARG in RUN overridden by compose's build.args
    search = (root / m["services"]["search"]["requirements"]).read_text()
    assert "services/search/requirements.txt" in search and "searchextra==1.0.0" in search
    assert m["services"]["search"]["command"][-2:] == ["--port", "9000"]
    # a service's own apt packages go on a base of its own; pip install . reads pyproject.toml
    assert m["bases"]["train-base"] == {"from": "gpu", "system": ["libgomp1"]}
    assert m["services"]["train"]["requirements"] == "services/train/pyproject.toml"
    # the gpu base's --extra-index-url is a named index; --find-links in cpu.txt find_links
    assert m["project"]["find_links"] == ["wheels"]
    assert [i["url"] for i in m["project"]["index"]] == [(tmp_path / "repo-index/simple").as_uri()]
    assert "cache" not in m["services"]  # compose's redis is not built here
    report = (root / "layerforge-migration.md").read_text()
    assert "1 requirement line(s) carry --hash options" in report
    assert {r["text"] for r in doc["rows"] if r["target"] == "dropped"} >= {
        "rm -rf /var/lib/apt/lists/*",
        "find /usr/local -name __pycache__ -prune -exec rm -rf {} +",
        "rm -rf /root/.cache/pip",
    }
    assert all(r["detail"] for r in doc["rows"] if r["target"] == "dropped")


def test_expose_and_healthcheck_become_keys_and_user_a_comment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """EXPOSE and HEALTHCHECK map onto the manifest's keys; USER stays a comment that says
    why (a Dockerfile's useradd gives the user another uid than layerforge's default)."""
    root = tiered_fleet(tmp_path / "repo")
    _, doc = init_from(root, capsys)
    user = rows_at(doc, "services/api/Dockerfile", 9)[0]
    assert user["detail"].startswith(
        'USER app: set user = "app" in [services.api] (docs/manifest.md)'
    )
    assert "uid" in user["detail"]
    text = (root / "layerforge.toml").read_text()
    assert '# user = "app"' in text
    api = manifest_of(root)["services"]["api"]
    assert "user" not in api
    assert api["expose"] == [8000]
    assert api["healthcheck"] == {
        "command": "python -c \"import urllib.request as u; u.urlopen('http://[::1]:80/')\"",
        "interval": "10s",
    }


def test_healthcheck_forms() -> None:
    assert healthcheck_of("NONE") is False
    assert healthcheck_of('--timeout=3s --retries=2 CMD ["curl", "-f", "http://x/"]') == {
        "command": ["curl", "-f", "http://x/"],
        "timeout": "3s",
        "retries": 2,
    }
    assert healthcheck_of("--unknown=1 CMD true") is None
    assert healthcheck_of("CMD [not json") is None
    assert port_of("8000") == 8000 and port_of("8000/tcp") == 8000
    assert port_of("9000/udp") == "9000/udp"


def test_universal_worker_shares_a_base_and_proposes_a_runtime_group(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = universal_worker(tmp_path / "repo")
    code, doc = init_from(root, capsys)
    assert code == 0
    m = manifest_of(root)
    base = m["bases"]["worker-base"]
    assert base["requirements"] == "requirements/worker.txt"  # -r chains, --hash, find-links
    assert base["runtime"] == {"heavylib": ["heavylib==2.0"]}
    cpu, gpu = m["services"]["worker-cpu"], m["services"]["worker-gpu"]
    assert cpu["command"][-1] == "cpu" and gpu["command"][-1] == "gpu"
    assert gpu["env"] == {"PYTHONUNBUFFERED": "1", "DEVICE": "cuda"}
    assert cpu["source"] == gpu["source"] == "worker" and cpu["workdir"] == "/srv"
    runtime = [r for r in doc["rows"] if r["target"] == "runtime"]
    assert "layerforge-runtime ensure heavylib" in runtime[0]["detail"]
    project = load(root / "layerforge.toml")
    assert project.nodes["worker-base"].requirements.lines == (
        "basepkg==1.0",
        "mlpkg==1.0",
        "workerpkg>=1",
    )


def test_quoted_semicolon_is_one_command() -> None:
    assert split_shell('python -c "import torch; print(1)" && rm -rf /x; echo $A | tee f') == [
        'python -c "import torch; print(1)"',
        "rm -rf /x",
        "echo $A | tee f",
    ]


UNMAPPABLE = """\
FROM debian:bookworm
SHELL ["/bin/bash", "-c"]
ONBUILD RUN echo never
STOPSIGNAL SIGINT
ADD https://files.example/model.bin /models/
COPY app/ /app/
COPY extra/ /opt/extra/
CMD ["python3", "-m", "app"]
"""


def test_shell_onbuild_and_unplaceable_copies_are_reported_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "repo"
    (root / "app/app").mkdir(parents=True)
    (root / "extra").mkdir()
    (root / "Dockerfile").write_text(UNMAPPABLE)
    code = main(["init", "--from", str(root), "--no-lock", "--json"])
    out, err = capsys.readouterr()
    assert code == 1
    doc = json.loads(out)
    missing = {r["instruction"] for r in doc["rows"] if r["target"] == "not-migrated"}
    assert missing == {"SHELL", "ONBUILD", "STOPSIGNAL", "COPY"}
    add = next(r for r in doc["rows"] if r["instruction"] == "ADD")
    assert add["target"] == "kept-as-run" and "NOT reproducible" in add["detail"]
    assert "the migration is incomplete" in err and "Traceback" not in err
    # the files are written all the same, for the user to finish
    m = manifest_of(root)
    assert m["bases"]["repo-base"]["from"] == "debian:bookworm"  # --os registry (the default)
    assert "/models/model.bin" in m["bases"]["repo-base"]["run"][0]


def test_init_from_never_overwrites(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = universal_worker(tmp_path / "repo")
    (root / "layerforge.toml").write_text("# mine\n")
    code = main(["init", "--from", str(root), "--no-lock"])
    _, err = capsys.readouterr()
    assert code == 2 and "never overwrites" in err
    assert (root / "layerforge.toml").read_text() == "# mine\n"
    assert not (root / "layerforge-migration.md").exists()


def test_tag_option_matches_a_from_no_rule_would(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "repo"
    (root / "images/one").mkdir(parents=True)
    (root / "svc").mkdir()
    (root / "images/one/Dockerfile").write_text(
        "FROM debian:bookworm\nRUN apt-get install -y curl\n"
    )
    (root / "svc/Dockerfile").write_text('FROM registry.example/team/foundation:3\nCMD ["true"]\n')
    code, doc = init_from(root, capsys, "--tag", "registry.example/team/foundation=images/one")
    assert code == 0
    m = manifest_of(root)
    assert m["services"]["svc"]["base"] == "one"
    row = rows_at(doc, "svc/Dockerfile", 1)[0]
    assert "--tag registry.example/team/foundation=images/one" in row["detail"]


def test_shared_requirement_moves_up_and_the_report_lists_other_hierarchies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "repo"
    (root / "base").mkdir(parents=True)
    (root / "base/Dockerfile").write_text("FROM debian:bookworm\nRUN pip install six\n")
    extra = {"one": " pair==2.0", "two": " pair==2.0", "three": ""}
    for svc, more in extra.items():
        (root / svc / "src").mkdir(parents=True)
        (root / svc / "Dockerfile").write_text(
            f"FROM acme/base:1\nRUN pip install common==1.0{more} {svc}kit\nCOPY src /app\n"
        )
    code, _ = init_from(root, capsys)
    assert code == 0
    m = manifest_of(root)
    # every service installs common: it dominates, so it is applied
    assert m["bases"]["base"]["requirements"] == ["six", "common==1.0"]
    assert m["services"]["one"]["requirements"] == ["pair==2.0", "onekit"]
    text = (root / "layerforge-migration.md").read_text()
    assert "- moved common==1.0 up into base: every service of it installs it" in text
    # two of three install pair: a trade-off, left to suggest (after a build)
    assert "## Other hierarchies to consider" in text
    assert "- move pair up to base (from one, two)" in text


EDGES = """\
ARG BASE
FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH VIRTUAL_ENV=/opt/venv APP_MODE=prod
RUN python -m venv /opt/venv
RUN --mount=type=cache,target=/root/.cache/pip pip install six==1.16.0
RUN <<EOT
set -e
echo "a; b" > /etc/greeting
EOT
COPY src/ /app/
CMD ["python", "-m", "app"]
"""


def test_buildkit_flags_heredocs_venv_and_path_are_understood(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "repo"
    (root / "svc/src/app").mkdir(parents=True)
    (root / "svc/Dockerfile").write_text(EDGES)
    (root / "other").mkdir()
    (root / "other/Dockerfile").write_text('FROM ${BASE}\nCMD ["true"]\n')
    code, doc = init_from(root, capsys)
    assert code == 1  # only for the FROM whose ARG has no value
    assert len(doc["problems"]) == 1 and "FROM ${BASE}: the ARG has no value" in doc["problems"][0]
    m = manifest_of(root)
    assert m["services"]["svc"]["requirements"] == ["six==1.16.0"]  # --mount dropped
    assert m["services"]["svc"]["env"] == {"APP_MODE": "prod"}  # PATH: the venv's own
    assert m["bases"]["svc-base"]["run"] == ['set -e\necho "a; b" > /etc/greeting']
    heredoc = rows_at(doc, "svc/Dockerfile", 6)
    assert [r["target"] for r in heredoc] == ["run"]  # one script, one row
    dropped = {r["line"] for r in doc["rows"] if r["target"] == "dropped"}
    assert dropped == {3, 4}  # ENV PATH/VIRTUAL_ENV, python -m venv


def test_requirement_lines_no_manifest_can_hold_are_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "repo"
    (root / "app/src").mkdir(parents=True)
    (root / "app/requirements.txt").write_text("six\n-e ../lib\n--pre\n")
    (root / "app/Dockerfile").write_text(
        "FROM python:3.11-slim\nCOPY requirements.txt /r.txt\nRUN pip install -r /r.txt\n"
        "COPY src /app\n"
    )
    code, doc = init_from(root, capsys)
    assert code == 1
    assert any("app/requirements.txt:2: -e ../lib" in p for p in doc["problems"])
    assert any("app/requirements.txt:3: --pre" in p for p in doc["problems"])


SIMPLE = """\
FROM python:3.11-slim
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
CMD ["python", "main.py"]
"""


def test_single_service_repository_copying_into_the_workdir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "svc"
    root.mkdir()
    (root / "Dockerfile").write_text(SIMPLE)
    (root / "requirements.txt").write_text("six\n")
    (root / "main.py").write_text("import six\n")
    code, _ = init_from(root, capsys)
    assert code == 0
    service = manifest_of(root)["services"]["svc"]
    assert service["requirements"] == "requirements.txt"  # COPY F . puts it in the workdir
    assert service["source"] == "." and service["base"] == "svc-base"
