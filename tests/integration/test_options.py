"""Documented options that had no test: each test fails if its option were ignored.

``build --dry-run``, ``--revision``, ``--no-remote-cache``, ``push --tag``, the commit tag,
``export archive --tag``, ``gc --no-caches`` / ``--all-caches``, and zstd images read by skopeo
and umoci. A real ``distribution`` registry on 127.0.0.1 where a registry is needed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from layerforge.fsutil import sha256_digest
from layerforge.oci.media import OCI_LAYER_GZIP, OCI_LAYER_ZSTD
from tests.conftest import require_tools
from tests.integration.registry_server import Registry
from tests.integration.tiny import cli, cli_json, local_digests, manifest_of, tiny_project
from tests.integration.tools import Buildah, run

pytestmark = pytest.mark.integration

REVISION = "org.opencontainers.image.revision"


@pytest.fixture(autouse=True)
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never read or write the real ~/.docker/config.json."""
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker/config.json").write_text("{}\n")  # buildah insists that it exists
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))


def remote_digest(ref: str) -> str:
    out = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
        capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr.decode()
    return sha256_digest(out.stdout)


def remote_tags(registry: Registry, repository: str) -> set[str]:
    out = run(
        ["skopeo", "list-tags", "--tls-verify=false", f"docker://{registry.host}/{repository}"]
    )
    return set(json.loads(out[out.index("{") :])["Tags"])


def lock_and_build(project: Path, cache: Path, *extra: str) -> dict[str, dict[str, object]]:
    args = ("-f", str(project), "--cache-dir", str(cache))
    if not (project / "layerforge.lock").exists():
        code, _, err = cli("lock", *args)
        assert code == 0, err
    doc = cli_json("build", "--no-verify", *args, *extra)
    return {str(i["node"]): i for i in doc["images"]}


def stored(store: Path) -> dict[str, bytes]:
    """Every file under ``store`` with its bytes."""
    return {str(p.relative_to(store)): p.read_bytes() for p in store.rglob("*") if p.is_file()}


def test_build_dry_run_writes_nothing_and_reports_the_plan(tmp_path: Path) -> None:
    project = tiny_project(tmp_path / "p")
    cache = tmp_path / "cache"
    assert cli("lock", "-f", str(project), "--cache-dir", str(cache))[0] == 0
    store = project / ".layerforge"
    before = stored(store)  # lock stored the OS layer, and no image
    args = ("build", "--dry-run", "--no-verify", "-f", str(project), "--cache-dir", str(cache))
    doc = cli_json(*args)
    assert [(s["node"], s["status"]) for s in doc["steps"]] == [("base", "build"), ("svc", "build")]
    assert stored(store) == before, "a dry run wrote to the store"
    code, out, _ = cli(*args)
    assert code == 0 and "base" in out and "build" in out
    # built, the dry run says so, and the keys it showed are the keys that were built
    built = lock_and_build(project, cache)
    again = cli_json(*args)
    assert {s["node"]: s["status"] for s in again["steps"]} == {"base": "cached", "svc": "cached"}
    assert {s["node"]: s["key"] for s in doc["steps"]} == {n: i["key"] for n, i in built.items()}


def test_revision_is_recorded_in_the_annotations_not_the_key(tmp_path: Path) -> None:
    """A revision is a label (issue 13 item 5): the same key, relabelled, not rebuilt."""
    project = tiny_project(tmp_path / "p")
    cache = tmp_path / "cache"
    plain = lock_and_build(project, cache)
    store = project / ".layerforge"
    assert REVISION not in manifest_of(store, "svc:latest").get("annotations", {})
    revised = lock_and_build(project, cache, "--revision", "0123abcd")
    for node in ("base", "svc"):
        annotations = manifest_of(store, f"{node}:latest")["annotations"]
        assert annotations[REVISION] == "0123abcd"
        assert revised[node]["key"] == plain[node]["key"]
        assert revised[node]["status"] == "relabelled"
    planned = cli_json(
        "plan", "--revision", "0123abcd", "-f", str(project), "--cache-dir", str(cache)
    )
    assert {s["node"]: s["status"] for s in planned["steps"]} == {"base": "cached", "svc": "cached"}


def test_no_remote_cache_does_not_consult_the_registry(registry: Registry, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    project = tiny_project(tmp_path / "p", f"{registry.host}/norc")
    built = lock_and_build(project, cache, "--no-remote-cache")
    key12 = str(built["svc"]["key"]).split(":", 1)[1][:12]
    # the registry holds a different image under svc's key tag: whoever asks gets that one
    other = tiny_project(tmp_path / "other", message="an impostor")
    lock_and_build(other, cache)
    impostor = local_digests(other / ".layerforge")["svc"]
    run(["skopeo", "copy", "--dest-tls-verify=false", f"oci:{other / '.layerforge'}:svc:latest",
         f"docker://{registry.host}/norc/svc:lf-{key12}"])  # fmt: skip

    fresh = tmp_path / "fresh"
    shutil.copytree(project, fresh, ignore=shutil.ignore_patterns(".layerforge"))
    args = ("-f", str(fresh), "--cache-dir", str(cache))
    plan = cli_json("plan", "--no-remote-cache", *args)
    assert {s["node"]: s["status"] for s in plan["steps"]} == {"base": "build", "svc": "build"}
    images = lock_and_build(fresh, cache, "--no-remote-cache")
    assert {n: i["status"] for n, i in images.items()} == {"base": "built", "svc": "built"}
    assert local_digests(fresh / ".layerforge") == local_digests(project / ".layerforge")
    # the same build with the remote cache takes the registry's image: the option mattered
    again = tmp_path / "again"
    shutil.copytree(project, again, ignore=shutil.ignore_patterns(".layerforge"))
    plan = cli_json("plan", "-f", str(again), "--cache-dir", str(cache))
    assert {s["node"]: s["status"] for s in plan["steps"]}["svc"] == "remote"
    images = lock_and_build(again, cache)
    assert images["svc"]["status"] == "remote" and images["svc"]["manifest"] == impostor


def test_push_tag_pushes_every_extra_tag(registry: Registry, tmp_path: Path) -> None:
    project = tiny_project(tmp_path / "p", f"{registry.host}/extra", project='version = "2.1.0"')
    lock_and_build(project, tmp_path / "cache")
    args = ("push", "svc", "-t", "release-7", "--tag", "candidate", "-f", str(project))
    doc = cli_json(*args, "--cache-dir", str(tmp_path / "cache"))
    local = local_digests(project / ".layerforge")
    by_repo = {i["repository"]: i for i in doc["images"]}
    assert set(by_repo) == {"extra/base", "extra/svc"}  # with its ancestor
    for node in ("base", "svc"):
        assert by_repo[f"extra/{node}"]["tags"][1:] == ["latest", "2.1.0", "release-7", "candidate"]
        for tag in ("release-7", "candidate", "2.1.0"):
            assert remote_digest(f"{registry.host}/extra/{node}:{tag}") == local[node]


def git(project: Path, *args: str) -> str:
    return run(["git", "-C", str(project), "-c", "user.name=t", "-c", "user.email=t@127.0.0.1",
                *args])  # fmt: skip


def test_the_commit_tag_only_for_a_clean_checkout(registry: Registry, tmp_path: Path) -> None:
    require_tools("git")
    project = tiny_project(tmp_path / "p", f"{registry.host}/commit")
    cache = tmp_path / "cache"
    assert cli("lock", "-f", str(project), "--cache-dir", str(cache))[0] == 0
    git(project, "init", "-q")
    git(project, "add", "-A", "--", ".", ":!.layerforge")  # the store is not committed
    git(project, "commit", "-q", "-m", "one")
    commit = git(project, "rev-parse", "HEAD").strip()[:12]
    # the documented CI pipeline: a clean checkout, then `build --push` (the store, made in the
    # checkout, is untracked: the tree is still the commit)
    doc = cli_json("build", "--push", "--no-verify", "-f", str(project), "--cache-dir", str(cache))
    tags = {i["repository"]: i["tags"] for i in doc["push"]["images"]}
    assert all(commit in t for t in tags.values()), tags
    local = local_digests(project / ".layerforge")
    assert remote_digest(f"{registry.host}/commit/svc:{commit}") == local["svc"]
    # a tracked file changed: the image is not that commit's, so no commit tag
    (project / "svc/svc/__main__.py").write_text("print('changed')\n")
    doc = cli_json("build", "--push", "--no-verify", "-f", str(project), "--cache-dir", str(cache))
    svc = {i["repository"]: i for i in doc["push"]["images"]}["commit/svc"]
    assert len(svc["tags"]) == 2 and svc["tags"][1] == "latest", svc["tags"]
    assert remote_digest(f"{registry.host}/commit/svc:{commit}") == local["svc"]  # untouched
    in_registry = remote_tags(registry, "commit/svc")
    images = {t for t in in_registry if not t.startswith("sha256-")}  # sha256-<hex>: SBOMs
    assert {t for t in images if not t.startswith("lf-")} == {
        "latest",
        commit,
    }


def archive_manifest(path: Path) -> tuple[str, list[str]]:
    """(manifest digest in index.json, RepoTags of manifest.json) of an archive."""
    with tarfile.open(path) as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        docker = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    return str(index["manifests"][0]["digest"]), list(docker[0]["RepoTags"])


def test_export_archive_tag_writes_that_tag(tmp_path: Path) -> None:
    require_tools("skopeo")
    project = tiny_project(tmp_path / "p")
    cache = tmp_path / "cache"
    first = lock_and_build(project, cache)["svc"]
    (project / "svc/svc/__main__.py").write_text("print('second')\n")
    second = lock_and_build(project, cache)["svc"]
    tag = "lf-" + str(first["key"]).split(":", 1)[1][:12]
    out = tmp_path / "out"
    out.mkdir()
    args = ("export", "archive", "svc", "-f", str(project), "--cache-dir", str(cache), "-o")
    doc = cli_json(*args, str(out), "--tag", tag)
    path = out / f"svc-{tag}.tar"
    assert doc["archive"] == str(path) and doc["digest"] == first["manifest"]
    assert archive_manifest(path) == (first["manifest"], [f"tiny/svc:{tag}"])
    raw = run(["skopeo", "inspect", "--raw", f"oci-archive:{path}"])
    assert sha256_digest(raw.encode()) == first["manifest"]
    latest = cli_json(*args, str(out))
    assert latest["digest"] == second["manifest"] and latest["archive"] == str(out / "svc.tar")
    code, _, err = cli(*args, str(out), "--tag", "lf-000000000000")
    assert code != 0 and "svc:lf-000000000000" in err and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["svc-" + tag + ".tar", "svc.tar"]


def test_export_archive_tag_of_a_remote_cache_hit_fetches_its_layers(
    registry: Registry, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    project = tiny_project(tmp_path / "p", f"{registry.host}/arch")
    first = lock_and_build(project, cache, "--push")["svc"]
    tag = "lf-" + str(first["key"]).split(":", 1)[1][:12]
    fresh = tmp_path / "fresh"
    shutil.copytree(project, fresh, ignore=shutil.ignore_patterns(".layerforge"))
    assert lock_and_build(fresh, cache)["svc"]["status"] == "remote"  # layers stay remote
    (fresh / "svc/svc/__main__.py").write_text("print('moved on')\n")
    assert lock_and_build(fresh, cache)["svc"]["status"] == "built"  # latest moved on
    path = tmp_path / "old.tar"
    args = ("export", "archive", "svc", "--tag", tag, "-o", str(path))
    doc = cli_json(*args, "-f", str(fresh), "--cache-dir", str(cache))
    assert doc["digest"] == first["manifest"]
    run(["skopeo", "copy", f"oci-archive:{path}", f"oci:{tmp_path / 'copy'}:svc"])


# -- gc --------------------------------------------------------------------------------------


def aged(path: Path) -> Path:
    """A cache entry (a directory holding one file), last modified long ago."""
    path.mkdir(parents=True)
    (path / "file").write_bytes(b"x" * 4096)
    for p in (path / "file", path):
        os.utime(p, (1000.0, 1000.0))
    return path


def test_gc_no_caches_and_all_caches(tmp_path: Path) -> None:
    project = tiny_project(tmp_path / "p")
    cache = tmp_path / "cache"
    lock_and_build(project, cache)
    unreached = {
        "chain": aged(cache / "rootfs" / ("c" * 32)),  # an unpacked image no store has
        "app": aged(cache / "app" / ("a" * 32)),
        "crashed": aged(cache / "stage" / "svc-crashed"),
    }
    input_keyed = {
        "debootstrap": aged(cache / "debootstrap" / ("1" * 24)),
        "tarball": aged(cache / "tarballs" / ("e" * 24)),
        "downloads": aged(cache / "sandbox" / "apt"),
    }
    system_layer = cache / "sandbox" / "layers" / "k.json"  # a system layer's record
    system_layer.parent.mkdir(parents=True)
    system_layer.write_text("{}")
    os.utime(system_layer, (1000.0, 1000.0))
    input_keyed["system layer"] = system_layer
    mine = aged(cache / "mine")
    args = ("gc", "-f", str(project), "--cache-dir", str(cache))

    doc = cli_json(*args, "--no-caches")
    assert not doc.get("caches")
    assert all(p.exists() for p in (*unreached.values(), *input_keyed.values(), mine))

    doc = cli_json(*args)
    assert doc["caches"]["cache_dir"] == str(cache)
    assert [n for n, p in unreached.items() if p.exists()] == []
    assert all(p.exists() for p in (*input_keyed.values(), mine))

    doc = cli_json(*args, "--all-caches")
    assert [n for n, p in input_keyed.items() if p.exists()] == []
    assert mine.exists() and (cache / "stores").is_dir()
    assert local_digests(project / ".layerforge").keys() == {"base", "svc"}


# -- zstd ------------------------------------------------------------------------------------


def tree(root: Path) -> dict[str, tuple[str, int, str]]:
    """path -> (kind, mode, content or link target) of everything under ``root``."""
    found: dict[str, tuple[str, int, str]] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        st = path.lstat()
        if path.is_symlink():
            found[rel] = ("link", 0, os.readlink(path))
        elif path.is_dir():
            found[rel] = ("dir", st.st_mode & 0o7777, "")
        else:
            found[rel] = ("file", st.st_mode & 0o7777, sha256_digest(path.read_bytes()))
    return found


def test_zstd_images_are_read_by_skopeo_and_umoci(tmp_path: Path) -> None:
    require_tools("skopeo", "umoci", "buildah")
    cache = tmp_path / "cache"
    gz = tiny_project(tmp_path / "gz")
    zst = tiny_project(tmp_path / "zst", project='compression = "zstd"')
    for project in (gz, zst):
        (project / "svc/svc/data").mkdir(parents=True, exist_ok=True)
        (project / "svc/svc/data/blob.bin").write_bytes(bytes(range(256)) * 400)
        (project / "svc/svc/run.sh").write_text("#!/bin/sh\necho hi\n")
        (project / "svc/svc/run.sh").chmod(0o755)
        os.symlink("run.sh", project / "svc/svc/start")
        lock_and_build(project, cache)
    store = zst / ".layerforge"
    inspected = json.loads(run(["skopeo", "inspect", f"oci:{store}:svc:latest"]))
    raw = manifest_of(store, "svc:latest")
    assert {x["mediaType"] for x in raw["layers"]} == {OCI_LAYER_ZSTD}
    assert inspected["Layers"] == [x["digest"] for x in raw["layers"]]
    # skopeo copies it (reading every blob) and keeps the digest
    copy = tmp_path / "copy"
    run(["skopeo", "copy", f"oci:{store}:svc:latest", f"oci:{copy}:svc"])
    assert manifest_of(copy, "svc") == raw
    # the files are the same whatever the compression: umoci unpacks the gzip image, and a
    # gzip copy that skopeo made by decompressing the zstd layers (umoci 0.4.7, Debian
    # bookworm's, refuses +zstd layers itself); buildah mounts the zstd image as it is
    regz = tmp_path / "regz"
    run(["skopeo", "copy", "--dest-compress", "--dest-compress-format", "gzip",
         f"oci:{store}:svc:latest", f"oci:{regz}:svc"])  # fmt: skip
    assert {x["mediaType"] for x in manifest_of(regz, "svc")["layers"]} == {OCI_LAYER_GZIP}
    trees = {}
    for name, layout, ref in (("gz", gz / ".layerforge", "svc:latest"), ("zst", regz, "svc")):
        bundle = tmp_path / f"bundle-{name}"
        run(["umoci", "unpack", "--rootless", "--image", f"{layout}:{ref}", str(bundle)])
        trees[name] = tree(bundle / "rootfs")
    assert trees["zst"] == trees["gz"]
    blob = [k for k in trees["zst"] if k.endswith("svc/data/blob.bin")]
    assert len(blob) == 1 and trees["zst"][blob[0]][2] == sha256_digest(bytes(range(256)) * 400)
    buildah = Buildah(tmp_path / "buildah")
    container = buildah.from_oci(store, "svc:latest")
    mounted = Path(buildah("mount", container).strip().splitlines()[-1])
    assert tree(mounted) == trees["gz"]
