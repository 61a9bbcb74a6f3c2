"""``kill -9`` at phases of a build and of a push (issue 10, item 3 and "how it is checked").

A fresh build of the example fleet is killed at one phase after another (seen in its
``--json`` events on stderr), each time in a new run that resumes what the last one left;
after every kill the store is validated independently (tests/integration/storecheck.py). Then
the build runs to the end, a push to a real registry is killed in the middle of a blob upload
and run again, and every tag's digest is compared with a clean build of the same project in a
fresh store with a fresh cache: identical.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE
from tests.integration.registry_server import Registry
from tests.integration.storecheck import private_cache, tag_digests, validate

pytestmark = pytest.mark.integration

LF = [sys.executable, "-m", "layerforge"]

# (task prefix, event kind): where a build is killed, in the order a build reaches them
BUILD_PHASES = [
    ("install:cpu", "start"),  # uv installing into a stage directory
    ("layer:cpu:numpy", "progress"),  # an own layer half written
    ("verify:cpu", "start"),  # chains unpacked into the cache, verify running
    ("layer:ml:scipy", "start"),
    ("install:batch", "start"),
    ("layer:batch:app", "finish"),  # batch's layers written, its image not yet tagged
    ("bytecode:gpu", "start"),  # the image's Python compiling bytecode in the sandbox
    ("verify:gpu", "finish"),
    ("build:gpu", "finish"),  # tagged: its build record written or about to be
]


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    reg = Registry(tmp_path / "registry")
    yield reg
    reg.stop()


def _project(target: Path, registry: str) -> Path:
    shutil.copytree(EXAMPLE, target, ignore=shutil.ignore_patterns(".layerforge", "__pycache__"))
    manifest = target / "layerforge.toml"
    text = manifest.read_text()
    manifest.write_text(text.replace('name = "acme-ml"', f'name = "acme-ml"\nregistry = '
                                     f'"{registry}"', 1))  # fmt: skip
    return target


def _run_until(argv: list[str], env: dict[str, str], phase: tuple[str, str]) -> str | None:
    """Run ``argv`` with --json; SIGKILL it at the first event of ``phase``. The event's
    task, or None if the command ended first (then it must have succeeded)."""
    with subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          env=env) as proc:  # fmt: skip
        assert proc.stderr is not None
        lines: list[str] = []
        for line in proc.stderr:
            lines.append(line)
            try:
                event = json.loads(line)
            except ValueError:
                continue
            task = str(event.get("task", ""))
            if task.startswith(phase[0]) and event.get("event") == phase[1]:
                proc.kill()
                proc.wait()
                return task
        assert proc.wait() == 0, "".join(lines[-30:])
        return None


def _check(cmd: list[str], env: dict[str, str]) -> None:
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    assert out.returncode == 0, out.stderr[-3000:]


def test_kill_9_at_each_phase_then_identical_digests(
    tmp_path: Path, shared_cache: Path, registry: Registry
) -> None:
    env = {**os.environ, "DOCKER_CONFIG": str(tmp_path / "docker")}
    project = _project(tmp_path / "killed", f"{registry.host}/acme")
    args = ["-f", str(project), "--cache-dir", str(private_cache(shared_cache, tmp_path / "c1"))]
    build = [*LF, "build", "--json", "--no-remote-cache", *args]
    lock = [*LF, "lock", "--json", *args]
    assert _run_until(lock, env, ("source:", "progress")) is not None  # OS layer half written
    _check(lock, env)
    store = project / ".layerforge"
    assert validate(store) == []
    killed = []
    for phase in BUILD_PHASES:
        killed.append(_run_until(build, env, phase))
        if (store / "index.json").is_file():
            assert validate(store) == [], f"after a kill at {killed[-1]}"
    assert None not in killed, killed  # every phase was reached in some run
    _check(build, env)
    assert validate(store) == []

    push = [*LF, "push", "--json", *args]
    assert _run_until(push, env, ("push:", "progress")) is not None  # mid blob upload
    assert validate(store) == []
    _check(push, env)
    before = tag_digests(store)
    assert list((store / "blobs" / "sha256").glob(".tmp-*"))  # the OS layer the lock kill cut
    _check([*LF, "gc", "--keep", "1", "--wait", "0", *args], env)  # no lock left by a kill
    assert validate(store) == [] and tag_digests(store) == before
    assert not list((store / "blobs" / "sha256").glob(".tmp-*"))  # killed writes cleaned

    _assert_as_clean(store, tmp_path, shared_cache, registry, env, "")


def _assert_as_clean(
    store: Path,
    tmp_path: Path,
    shared_cache: Path,
    registry: Registry,
    env: dict[str, str],
    context: str,
) -> None:
    """Every tag of ``store`` names what a clean build (fresh store and cache) writes, and
    the registry's ``latest`` manifests are those bytes."""
    clean = _project(tmp_path / "clean", f"{registry.host}/acme")
    cache = private_cache(shared_cache, tmp_path / "c2")
    clean_args = ["-f", str(clean), "--cache-dir", str(cache)]
    _check([*LF, "lock", *clean_args], env)
    _check([*LF, "build", "--json", "--no-remote-cache", *clean_args], env)
    assert tag_digests(store) == tag_digests(clean / ".layerforge"), context
    for node, digest in tag_digests(store).items():
        if node.endswith(":latest"):
            ref = f"docker://{registry.host}/acme/{node.split(':')[0]}:latest"
            raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", ref],
                                 capture_output=True, check=True, env=env).stdout  # fmt: skip
            assert "sha256:" + hashlib.sha256(raw).hexdigest() == digest, (context, node)


def _run_until_event(argv: list[str], env: dict[str, str], count: int) -> bool:
    """Run ``argv`` with --json; SIGKILL it at its ``count``-th event. False if it ended
    first (then it must have succeeded)."""
    with subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          env=env) as proc:  # fmt: skip
        assert proc.stderr is not None
        lines: list[str] = []
        for line in proc.stderr:
            lines.append(line)
            if line.startswith("{") and sum(x.startswith("{") for x in lines) >= count:
                proc.kill()
                proc.wait()
                return True
        assert proc.wait() == 0, "".join(lines[-30:])
        return False


def test_kill_9_at_random_points_then_identical_digests(
    tmp_path: Path, shared_cache: Path, registry: Registry
) -> None:
    """Kills at random events (a seeded draw, printed on failure) of builds and pushes that
    each resume the last: the store validates after each, and the end equals a clean build."""
    seed = int(os.environ.get("LAYERFORGE_KILL_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    env = {**os.environ, "DOCKER_CONFIG": str(tmp_path / "docker")}
    project = _project(tmp_path / "killed", f"{registry.host}/acme")
    args = ["-f", str(project), "--cache-dir", str(private_cache(shared_cache, tmp_path / "c1"))]
    _check([*LF, "lock", *args], env)
    store = project / ".layerforge"
    points: list[tuple[str, int, bool]] = []

    def kill_at_random(verb: str, top: int, extra: tuple[str, ...] = ()) -> None:
        count = rng.randint(1, top)
        cut = _run_until_event([*LF, verb, "--json", *extra, *args], env, count)
        points.append((verb, count, cut))
        assert validate(store) == [], f"seed {seed}: after kills at {points}"

    # a cold build of the example fleet emits about 90 events, a resumed one fewer
    for _ in range(4):
        kill_at_random("build", 45, ("--no-remote-cache",))
    _check([*LF, "build", "--no-remote-cache", *args], env)
    for _ in range(2):
        kill_at_random("push", 30)
    _check([*LF, "push", *args], env)
    assert validate(store) == [], f"seed {seed}: {points}"
    for verb in ("build", "push"):  # the draws did kill, or the test proves nothing
        assert any(cut for v, _, cut in points if v == verb), f"seed {seed}: {points}"
    _assert_as_clean(store, tmp_path, shared_cache, registry, env, f"seed {seed}: {points}")
