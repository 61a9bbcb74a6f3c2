"""Red team of the sandbox: what a hostile image or run step can make the HOST do.

The escapes of tests/integration/test_sandbox_escape.py are attempts from inside; these are
attempts to make layerforge's own host-side code (and bubblewrap's setup, which runs as the
host's root before the sandbox exists) follow a symlink the image or a step planted in the
root filesystem, and write outside it.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from layerforge import proc
from layerforge.cli import main
from layerforge.errors import SandboxError
from layerforge.oci.unpack import chain_id
from layerforge.sandbox import runner as runners
from layerforge.sandbox.runner import Bwrap, Invocation, Mount
from layerforge.sandbox.system import cache_mounts
from layerforge.sandbox.verify import PYC_PREFIX, Root, bytecode_cache
from tests.integration.hostroot import copy_programs
from tests.integration.tools import run as run_tool

pytestmark = pytest.mark.integration

TOOLS = ("sh", "env", "cat", "ls", "ln", "mkdir")


@pytest.fixture(scope="module")
def base_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny root filesystem: a shell and a few tools with the host's C library."""
    root = tmp_path_factory.mktemp("redteam") / "rootfs"
    (root / "usr/bin").mkdir(parents=True)
    (root / "bin").symlink_to("usr/bin")
    copy_programs(root, TOOLS)
    return root


@pytest.fixture
def rootfs(base_rootfs: Path, tmp_path: Path) -> Path:
    """A private copy (the tests plant symlinks in it)."""
    root = tmp_path / "image" / "rootfs"
    shutil.copytree(base_rootfs, root, symlinks=True)
    return root


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """A host directory the image must never get written into."""
    directory = tmp_path / "host-victim"
    directory.mkdir()
    return directory


def climb(rootfs: Path, start: str) -> str:
    """A relative symlink target that leads from ``rootfs/start`` up to the host's /."""
    depth = len(rootfs.parts) - 1 + start.count("/")
    return "/".join([".."] * depth)


def plant(rootfs: Path, host: Path, style: str) -> None:
    """Make the image's /var a symlink that leads to ``host``."""
    var = rootfs / "var"
    if style == "absolute":  # what the host's os.mkdir follows as a host path
        var.symlink_to(host)
    elif style == "relative":  # climbs out of the root directory on the host
        var.symlink_to(climb(rootfs, "var") + str(host))
    else:  # bubblewrap's view while it sets up: the root at /newroot, the host at /oldroot
        var.symlink_to("../oldroot" + str(host))
        # where that leads on the host (beside the root, not in it): there, so that the
        # host-side mkdir gets through and bubblewrap's own is tried
        (rootfs.parent / ("oldroot" + str(host))).mkdir(parents=True)


STYLES = ["absolute", "relative", "oldroot"]


def invocation(rootfs: Path, kind: str, script: str, cache: Path) -> Invocation:
    mounts = (Mount(cache, "/var/cache/apt/archives"),)
    argv = ("/bin/sh", "-c", script)
    if kind == "verify":
        return Invocation(rootfs, argv, mounts=mounts, read_only=True)
    return Invocation(rootfs, argv, mounts=mounts, privileges="system")


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("kind", ["verify", "system"])
def test_a_symlinked_parent_of_a_mount_point_creates_nothing_outside_the_root(
    rootfs: Path, host: Path, tmp_path: Path, kind: str, style: str
) -> None:
    """The image's /var leads to a host directory: preparing the mount point of
    /var/cache/apt/archives (host-side mkdir, then bubblewrap's own, as the host's root)
    must resolve it inside the root, as the program will see it, and the program still
    finds its mount at /var/cache/apt/archives."""
    plant(rootfs, host, style)
    cache = tmp_path / "cache"
    cache.mkdir()
    inv = invocation(rootfs, kind, "echo hello > /var/cache/apt/archives/probe", cache)
    runners.prepare(inv)  # what the build does before each run
    result = runners.run(Bwrap(), inv)
    assert sorted(p.name for p in host.iterdir()) == []
    assert result.returncode == 0, result.stdout + result.stderr
    assert (cache / "probe").read_text() == "hello\n"


def test_a_symlinked_resolv_conf_parent_touches_no_host_file(
    rootfs: Path, host: Path, tmp_path: Path
) -> None:
    """With the network on, /etc/resolv.conf is bound from the host: an image whose /etc
    leads to a host directory must not make layerforge create resolv.conf there."""
    (rootfs / "etc").symlink_to(host)
    inv = Invocation(rootfs, ("/bin/sh", "-c", "cat /etc/resolv.conf"), network=True,
                     privileges="system")  # fmt: skip
    runners.prepare(inv)
    result = runners.run(Bwrap(), inv)
    assert sorted(p.name for p in host.iterdir()) == []
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == Path("/etc/resolv.conf").read_text()


@pytest.mark.parametrize("top", ["proc", "dev", "tmp"])
def test_a_dangling_symlink_at_a_top_mount_point_is_no_traceback(
    rootfs: Path, host: Path, top: str
) -> None:
    """/proc, /dev or /tmp as a symlink to a missing host path: replaced by a directory in
    the root (not a FileExistsError from the host's mkdir), nothing created on the host."""
    (rootfs / top).symlink_to(host / "missing")
    inv = Invocation(rootfs, ("/bin/sh", "-c", "ls /proc/self/fd >/dev/null && echo ok"))
    runners.prepare(inv)
    result = runners.run(Bwrap(), inv)
    assert sorted(p.name for p in host.iterdir()) == []
    assert result.stdout == "ok\n", result.stdout + result.stderr


PLANTING_PROJECT = """
[project]
name = "planting"
python = "3.11"

[bases.planter]
from = {{ debootstrap = "bookworm" }}
network = false
run = [
  "mv /root/.cache /root/.cache-old && ln -s {absolute} /root/.cache",
  "mv /var/cache/apt /var/cache/apt-old && ln -s ../../../oldroot{oldroot} /var/cache/apt",
  "test -d /root/.cache/pip && test -d /var/cache/apt/archives",
]
"""


def test_run_steps_that_plant_symlinks_make_the_next_step_write_nothing_on_the_host(
    tmp_path: Path, shared_cache: Path
) -> None:
    """The attack through a manifest's own run steps (the image may be a clean Debian):
    a step replaces the parent directory of the next step's cache mounts by a symlink to a
    host directory, absolute (which the host's mkdir follows) or climbing to bubblewrap's
    /oldroot (which bubblewrap's mkdir follows). The build succeeds, the next steps see
    their caches where they expect them, and the host directories stay empty."""
    absolute, oldroot = tmp_path / "victim-a", tmp_path / "victim-b"
    absolute.mkdir()
    oldroot.mkdir()
    project = tmp_path / "project"
    project.mkdir()
    text = PLANTING_PROJECT.format(absolute=absolute, oldroot=oldroot)
    (project / "layerforge.toml").write_text(text)
    common = ["-f", str(project), "--cache-dir", str(shared_cache)]
    assert main(["lock", *common]) == 0
    code = main(["build", *common])
    assert sorted(os.listdir(absolute)) == []
    assert sorted(os.listdir(oldroot)) == []
    assert code == 0


@pytest.mark.parametrize("style", ["absolute", "oldroot"])
def test_a_symlink_planted_in_the_bytecode_cache_leads_nowhere(
    rootfs: Path, host: Path, tmp_path: Path, style: str
) -> None:
    """verify's bytecode cache (``CACHE/pyc/<chain>/<store>``, writable in the sandbox,
    shared by every verify over the same layers) holds symlinks a previous check planted:
    where the next service's application directory (/srv/app) got its scratch mount, and
    in the shared trees. Neither the host (making mount points) nor bubblewrap (mounting)
    follows them out, and the check's bytecode for /srv/app lands in a scratch directory.
    (Since the shared trees are mounted inside the scratch directory, no mount point is
    made inside a shared one at all.)"""
    cache_dir = tmp_path / "cache"
    root = Root(rootfs, ("sha256:" + "0" * 64,), app_at="/srv/app")
    owner = hashlib.sha256(str((tmp_path / "store").resolve()).encode()).hexdigest()[:16]
    shared = cache_dir / "pyc" / chain_id(root.chain) / owner
    (shared / "usr").mkdir(parents=True)
    if style == "absolute":
        (shared / "srv").symlink_to(host)
        (shared / "usr" / "srv").symlink_to(host)
    else:  # from /newroot/var/cache/layerforge-pyc, four levels up is bubblewrap's /
        (shared / "srv").symlink_to("../../../../oldroot" + str(host))
        (shared / "usr" / "srv").symlink_to("../../../../../oldroot" + str(host))
        landing = shared.parents[3] / ("oldroot" + str(host))  # the same, on the host
        landing.mkdir(parents=True)
    script = f"mkdir -p {PYC_PREFIX}/srv/app && echo hello > {PYC_PREFIX}/srv/app/probe"
    with bytecode_cache(cache_dir, root, tmp_path / "store") as pyc:
        inv = Invocation(rootfs, ("/bin/sh", "-c", script), mounts=pyc, read_only=True)
        runners.prepare(inv)  # what verify_image does before each check
        result = runners.run(Bwrap(), inv)
        probe = sorted(p.read_text() for m in pyc for p in m.source.rglob("probe"))
    if style != "absolute":
        shutil.rmtree(shared.parents[3] / "oldroot")
    assert sorted(p.name for p in host.iterdir()) == []
    assert result.returncode == 0, result.stdout + result.stderr
    assert probe == ["hello\n"]


@pytest.mark.parametrize(
    ("plant_it", "message"),
    [
        (lambda root: (root / "var").write_text("a file"), "/var in the root filesystem is not "),
        (lambda root: (root / "var").symlink_to("var"), "too many levels of symlinks"),
        (lambda root: (root / "var").symlink_to("/proc/self"), "in the sandbox's own /proc"),
    ],
    ids=["file", "loop", "proc"],
)
def test_a_mount_point_that_cannot_be_made_is_a_sandbox_error(
    rootfs: Path, tmp_path: Path, plant_it: Callable[[Path], object], message: str
) -> None:
    """A clear error naming the mount point (exit code 1, no traceback), not an OSError
    from the host's mkdir, and never a mount inside the sandbox's own /proc."""
    plant_it(rootfs)
    inv = invocation(rootfs, "system", "true", tmp_path)
    with pytest.raises(SandboxError) as err:
        runners.prepare(inv)
    assert "cannot mount at /var/cache/apt/archives" in str(err.value)
    assert message in str(err.value)
    assert err.value.exit_code == 1


# A hostile project's run step (no network needed): a Debian package of its own making,
# listed as libgomp1 in apt's package lists under a fake (unverifiable) signature, both left
# in the download caches; plus a file in each of the pip and uv caches.
PLANT_APT = r"""set -e
mkdir -p /tmp/p/DEBIAN /tmp/p/etc
cat > /tmp/p/DEBIAN/control <<END
Package: libgomp1
Version: 99
Architecture: amd64
Maintainer: x <x@example.invalid>
Description: planted
END
echo poisoned > /tmp/p/etc/lf-poisoned
deb=/var/cache/apt/archives/libgomp1_99_amd64.deb
dpkg-deb -b /tmp/p $deb
source=$(awk '/^deb /{sub("http://", "", $2); gsub("/", "_", $2); print $2; exit}' \
  /etc/apt/sources.list)
L=/var/lib/apt/lists/${source}_dists_bookworm
P=${L}_main_binary-amd64_Packages
{ grep -v ^Description /tmp/p/DEBIAN/control
  echo "Filename: pool/main/g/gcc-12/libgomp1_99_amd64.deb"
  echo "Size: $(stat -c %s $deb)"
  echo "SHA256: $(sha256sum $deb | cut -d' ' -f1)"
  echo "Description: planted"; echo; } > $P
cat > ${L}_InRelease <<END
-----BEGIN PGP SIGNED MESSAGE-----
Hash: SHA256

Origin: Debian
Suite: stable
Codename: bookworm
Date: $(date -u -R)
Valid-Until: $(date -u -R -d '+10 years')
Architectures: amd64
Components: main
SHA256:
 $(sha256sum $P | cut -d' ' -f1) $(stat -c %s $P) main/binary-amd64/Packages
-----BEGIN PGP SIGNATURE-----

AAAA
-----END PGP SIGNATURE-----
END
echo planted > /root/.cache/pip/lf-planted
echo planted > /root/.cache/uv/lf-planted
"""

POISONER = """
[project]
name = "poisoner"
python = "3.11"

[bases.poisoner]
from = {{ debootstrap = "bookworm" }}
network = false
context = "ctx"
run = ["sh /context/plant.sh"]
"""

VICTIM = """
[project]
name = "victim"
python = "3.11"

[bases.victim]
from = { debootstrap = "bookworm" }
system = ["libgomp1"]
run = ["ls /root/.cache/pip /root/.cache/uv > /etc/lf-seen-in-caches"]
"""


def test_a_hostile_project_cannot_poison_what_another_project_installs(
    tmp_path: Path, shared_cache: Path
) -> None:
    """Two projects on one machine (one cache directory). The first one's run step leaves
    a package of its own in the download caches, with package lists that name it libgomp1
    (the signature is garbage: apt verifies signatures only when it downloads lists), and
    files in the pip and uv caches. The second project, network on, installs libgomp1 and
    lists its pip and uv caches: it gets Debian's libgomp1 and sees nothing planted."""
    cache = tmp_path / "cache"  # never the shared one: this test poisons it
    cache.mkdir()
    proc.run(["cp", "-al", str(shared_cache / "debootstrap"), str(cache / "debootstrap")])
    projects = {"poisoner": POISONER.format(), "victim": VICTIM}
    for name, text in projects.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "layerforge.toml").write_text(text)
    (tmp_path / "poisoner" / "ctx").mkdir()
    (tmp_path / "poisoner" / "ctx" / "plant.sh").write_text(PLANT_APT)
    for name in projects:
        common = ["-f", str(tmp_path / name), "--cache-dir", str(cache), "--no-verify"]
        assert main(["lock", *common[:4]]) == 0
        assert main(["build", *common]) == 0, name
    bundle = tmp_path / "bundle"
    store = tmp_path / "victim" / ".layerforge"
    run_tool(["umoci", "unpack", "--image", f"{store}:victim:latest", str(bundle)])
    rootfs = bundle / "rootfs"
    assert not (rootfs / "etc/lf-poisoned").exists()
    assert (rootfs / "etc/lf-seen-in-caches").read_text().split() == [
        "/root/.cache/pip:",
        "/root/.cache/uv:",
    ]
    assert (rootfs / "usr/lib/x86_64-linux-gnu/libgomp.so.1").exists()


def test_what_a_step_left_in_the_shared_archive_cache_is_cleared_without_following_it(
    tmp_path: Path, host: Path
) -> None:
    """A run step may leave symlinks, fifos and directories in the shared apt archive cache
    (``partial`` a dangling symlink: the next build's host-side mkdir failed on it). They
    are removed before the next build mounts the cache; the host files they led to stay;
    the packages apt downloaded (regular files) stay."""
    archives = tmp_path / "cache" / "sandbox" / "apt" / "archives"
    archives.mkdir(parents=True)
    (host / "keep").write_text("host file")
    (archives / "partial").symlink_to(host / "missing")
    (archives / "lock").symlink_to(host / "keep")
    (archives / "x_1_all.deb").mkdir()
    (archives / "x_1_all.deb" / "inside").symlink_to(host)
    os.mkfifo(archives / "fifo")
    (archives / "libgomp1_1_amd64.deb").write_bytes(b"downloaded")
    work = tmp_path / "work"
    work.mkdir()
    mounts = cache_mounts(tmp_path / "cache", work)
    assert sorted(os.listdir(archives)) == ["libgomp1_1_amd64.deb", "partial"]
    assert (archives / "partial").is_dir() and not (archives / "partial").is_symlink()
    assert (host / "keep").read_text() == "host file"
    assert sorted(os.listdir(host)) == ["keep"]
    shared = [m for m in mounts if not m.source.is_relative_to(work)]
    assert [(m.source, m.target) for m in shared] == [(archives, "/var/cache/apt/archives")]


@pytest.mark.parametrize("kind", ["verify", "system"])
def test_the_hosts_timers_keys_and_memory_are_masked_in_proc(
    rootfs: Path, tmp_path: Path, kind: str
) -> None:
    """/proc/timer_list lists the timers of every process on the host (names, pids),
    /proc/keys the keys of the caller's user, /proc/sched_debug every task: empty in the
    sandbox, as Docker masks them."""
    script = "cat /proc/timer_list /proc/keys /proc/sched_debug /proc/kcore 2>/dev/null; true"
    result = runners.run(Bwrap(), invocation(rootfs, kind, script, tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""


# The image's Python as the bytecode step meets it (/opt/venv/bin/python -> this): it writes
# into the staged wheels it was given to compile, and leaves "bytecode" files that are
# symlinks to a host file, next to the sources and where PYTHONPYCACHEPREFIX says; the one
# regular file it writes there is the bytecode of __init__.py.
HOSTILE_PYTHON = """#!/bin/sh
site=/opt/venv/lib/python3.11/site-packages
echo "TROJAN = True" >> $site/lfprobe/__init__.py
mkdir -p $site/lfprobe/__pycache__
ln -s {secret} $site/lfprobe/__pycache__/__init__.cpython-311.pyc
out=$PYTHONPYCACHEPREFIX$site/lfprobe
mkdir -p $out
echo bytecode > $out/__init__.cpython-311.pyc
ln -s {secret} $out/other.cpython-311.pyc
exit 0
"""


def make_wheel(directory: Path) -> Path:
    """lfprobe 1.0, pure Python, one module."""
    files = {
        "lfprobe/__init__.py": b"VALUE = 1\n",
        "lfprobe/other.py": b"OTHER = 2\n",
        "lfprobe-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: lfprobe\nVersion: 1.0\n",
        "lfprobe-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\n"
        b"Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    rows = [f"{name},{record_hash(data)},{len(data)}" for name, data in files.items()]
    rows.append("lfprobe-1.0.dist-info/RECORD,,")
    files["lfprobe-1.0.dist-info/RECORD"] = ("\n".join(rows) + "\n").encode()
    wheel = directory / "lfprobe-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return wheel


def record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode()


def layer_members(store: Path) -> dict[str, bytes]:
    """Every regular file of every layer blob in ``store`` (name -> content)."""
    found: dict[str, bytes] = {}
    for blob in (store / "blobs" / "sha256").iterdir():
        with contextlib.suppress(tarfile.TarError, OSError, EOFError), tarfile.open(blob) as tar:
            for info in tar:
                extracted = tar.extractfile(info) if info.isreg() else None
                if extracted is not None:
                    found[info.name] = extracted.read()
    return found


def test_the_bytecode_step_writes_neither_into_the_wheel_cache_nor_makes_the_host_read(
    base_rootfs: Path, tmp_path: Path, host: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """compile_bytecode runs the IMAGE's Python over the staged wheels, which uv installs
    as hardlinks to its cache: a hostile image wrote through them into uv's cache (every
    later install of that wheel on the machine, any project, got its code), and a
    bytecode file it made a symlink to a host file was read into the layer."""
    secret = host / "secret"
    secret.write_text("host secret\n")
    project = tmp_path / "project"
    shutil.copytree(base_rootfs, project / "os", symlinks=True)
    python = project / "os/usr/bin/python3.11"
    python.write_text(HOSTILE_PYTHON.format(secret=secret))
    python.chmod(0o755)
    (project / "wheels").mkdir()
    make_wheel(project / "wheels")
    (project / "layerforge.toml").write_text(
        '[project]\nname = "bytecode"\npython = "3.11"\nfind_links = ["wheels"]\n\n'
        '[bases.base]\nfrom = "rootfs:os"\n\n'
        '[bases.deps]\nfrom = "base"\nrequirements = ["lfprobe==1.0"]\ncompile_bytecode = true\n'
    )
    uv_cache = tmp_path / "uv-cache"  # never the machine's: this test may poison it
    monkeypatch.setenv("UV_CACHE_DIR", str(uv_cache))
    common = ["-f", str(project), "--cache-dir", str(tmp_path / "cache")]
    assert main(["lock", *common]) == 0
    code = main(["build", *common, "--no-verify"])
    cached = sorted(uv_cache.rglob("lfprobe/__init__.py"))
    assert cached, "uv did not cache the wheel"
    assert [p.read_bytes() for p in cached] == [b"VALUE = 1\n"] * len(cached)
    members = layer_members(project / ".layerforge")
    assert b"host secret\n" not in members.values()
    assert code == 0
    site = "opt/venv/lib/python3.11/site-packages/lfprobe"
    assert members[f"{site}/__init__.py"] == b"VALUE = 1\n"
    assert members[f"{site}/__pycache__/__init__.cpython-311.pyc"] == b"bytecode\n"
    assert f"{site}/__pycache__/other.cpython-311.pyc" not in members


def test_compile_bytecode_still_puts_the_image_pythons_bytecode_next_to_the_sources(
    tmp_path: Path, shared_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same wheel over a real Debian base (and a cache directory of its own, so that
    nothing is reused): compileall writes under PYTHONPYCACHEPREFIX, read-only sources, and
    the bytecode reaches the layer next to its sources, in RECORD, with the magic number of
    the image's Python 3.11."""
    cache = tmp_path / "cache"
    cache.mkdir()
    proc.run(["cp", "-al", str(shared_cache / "debootstrap"), str(cache / "debootstrap")])
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "uv-cache"))
    project = tmp_path / "project"
    (project / "wheels").mkdir(parents=True)
    make_wheel(project / "wheels")
    (project / "layerforge.toml").write_text(
        '[project]\nname = "bytecode"\npython = "3.11"\nfind_links = ["wheels"]\n\n'
        '[bases.base]\nfrom = { debootstrap = "bookworm" }\n\n'
        '[bases.deps]\nfrom = "base"\nrequirements = ["lfprobe==1.0"]\ncompile_bytecode = true\n'
        'verify = ["import lfprobe.other"]\n'
    )
    common = ["-f", str(project), "--cache-dir", str(cache)]
    assert main(["lock", *common]) == 0
    assert main(["build", *common]) == 0
    members = layer_members(project / ".layerforge")
    site = "opt/venv/lib/python3.11/site-packages/lfprobe"
    for module in ("__init__", "other"):
        pyc = members[f"{site}/__pycache__/{module}.cpython-311.pyc"]
        assert pyc[:4] == (3495).to_bytes(2, "little") + b"\r\n"  # CPython 3.11's magic
        assert int.from_bytes(pyc[4:8], "little") == 0b01  # hash-based, not checked
    record = members[f"{site}-1.0.dist-info/RECORD"].decode()
    assert "lfprobe/__pycache__/other.cpython-311.pyc,sha256=" in record


# A verify statement of the hostile project: it writes, into verify's bytecode cache, the
# bytecode of the image's json module with one more line, under a header that matches the
# source's mtime and size (what Python checks).
POISON_PYC = (
    "import importlib.util as u, marshal, os; s = '/usr/lib/python3.11/json/__init__.py'; "
    "st = os.stat(s); c = compile(open(s).read() + '\\nopen(\\'/var/cache/layerforge-pyc/"
    "POISONED\\', \\'w\\').close()\\n', s, 'exec'); p = u.cache_from_source(s); "
    "os.makedirs(os.path.dirname(p), exist_ok=True); open(p, 'wb').write(u.MAGIC_NUMBER + "
    "bytes(4) + int(st.st_mtime).to_bytes(4, 'little') + st.st_size.to_bytes(4, 'little') "
    "+ marshal.dumps(c))"
)


def test_a_hostile_projects_verify_cannot_run_code_in_another_projects_verify(
    tmp_path: Path, shared_cache: Path
) -> None:
    """verify keeps the bytecode of what checks import between runs, for images with the
    same layers. Two checkouts of one project (same name and base: say a pull request from
    a fork and the main branch, on one CI runner), one cache directory: the first one's
    verify plants bytecode for json; the second one's verify imports json. It must not run
    the planted code (which leaves a file named POISONED in the cache)."""
    cache = tmp_path / "cache"
    cache.mkdir()
    proc.run(["cp", "-al", str(shared_cache / "debootstrap"), str(cache / "debootstrap")])
    checks = {"poisoner": POISON_PYC, "victim": "import json"}
    for name, check in checks.items():
        project = tmp_path / name
        project.mkdir()
        (project / "layerforge.toml").write_text(
            '[project]\nname = "app"\npython = "3.11"\n\n'
            f'[bases.os]\nfrom = {{ debootstrap = "bookworm" }}\nverify = [{json.dumps(check)}]\n'
        )
        common = ["-f", str(project), "--cache-dir", str(cache)]
        assert main(["lock", *common]) == 0
        assert main(["build", *common]) == 0, name
    assert sorted(p.name for p in (cache / "pyc").rglob("json/__init__*")) != []
    assert sorted(str(p) for p in (cache / "pyc").rglob("POISONED")) == []


# Clear the screen, set the window title, and print a fake success over the error.
TERMINAL_ATTACK = r"printf '\033[2J\033[H\033]0;owned\033\\build succeeded\n'"


@pytest.mark.parametrize("where", ["run", "verify"])
def test_a_failing_steps_output_cannot_drive_the_terminal(
    base_rootfs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    """The tail of a failing step's (or check's) output is part of the error printed to
    the user's terminal: its control characters are shown, not sent (ESC as \\x1b)."""
    project = tmp_path / "project"
    shutil.copytree(base_rootfs, project / "os", symlinks=True)
    (project / "os/usr/bin/python3.11").write_text("#!/bin/sh\n")
    step = json.dumps(f"{TERMINAL_ATTACK}; exit 3")
    check = json.dumps(f"sh: {TERMINAL_ATTACK}; exit 3")
    (project / "layerforge.toml").write_text(
        '[project]\nname = "term"\npython = "3.11"\n\n[bases.base]\nfrom = "rootfs:os"\n'
        + (f"run = [{step}]\n" if where == "run" else f"verify = [{check}]\n")
    )
    common = ["-f", str(project), "--cache-dir", str(tmp_path / "cache")]
    assert main(["lock", *common]) == 0
    capsys.readouterr()
    assert main(["build", *common]) == 1
    err = capsys.readouterr().err
    assert "build succeeded" in err
    assert "\x1b" not in err
    assert "\\x1b]0;owned" in err


@pytest.mark.parametrize("kind", ["verify", "system"])
def test_the_chroot_runner_shows_a_minimal_dev_not_the_hosts(
    rootfs: Path, tmp_path: Path, kind: str
) -> None:
    """Even the unconfined runner (trusted images only) must not hand a step the host's
    /dev: a writable bind of it let a cleanup step (``rm -rf /dev/*``) delete the host's
    device nodes, and showed the disks."""
    inv = invocation(rootfs, kind, "ls /dev; echo x > /dev/null && echo written", tmp_path)
    result = runners.run(runners.Chroot(), inv)
    assert result.returncode == 0, result.stdout + result.stderr
    names = set(result.stdout.split())
    assert "written" in names
    assert names - {"written"} <= {
        "null", "zero", "full", "random", "urandom", "tty", "pts", "ptmx", "shm",
        "fd", "stdin", "stdout", "stderr",
    }  # fmt: skip


class FakeRunner:
    """A runner whose "sandbox" is already over but says its init is ``pid``: a process
    that outlives it (as one stuck in the kernel would)."""

    name = "fake"

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def argv(self, inv: Invocation, fds: runners.Fds) -> list[str]:
        info = json.dumps({"child-pid": self.pid}).encode()
        return [sys.executable, "-c", f"import os; os.write({fds.info}, {info!r})"]


def test_a_sandbox_whose_processes_do_not_end_is_an_error_not_a_result(
    rootfs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """layerforge reads what a step left (the system layer's diff) only once every process
    of the sandbox is gone. If they are still there when the wait gives up, reading the
    work copy would race with them (a file swapped for a symlink to a host file between
    the check and the read): the run is an error instead."""
    survivor = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", "sleep", "600"])
    pid = 0
    try:
        children = Path(f"/proc/{survivor.pid}/task/{survivor.pid}/children")
        while not children.read_text().split():
            os.sched_yield()
        pid = int(children.read_text().split()[0])
        monkeypatch.setattr(runners, "SANDBOX_EXIT_TIMEOUT", 1)
        inv = Invocation(rootfs, ("/bin/sh", "-c", "true"))
        with pytest.raises(SandboxError) as err:
            runners.run(FakeRunner(pid), inv)
        assert "did not end" in str(err.value)
    finally:
        if pid:
            os.kill(pid, signal.SIGKILL)
        survivor.kill()
        survivor.wait()


def test_a_mount_point_that_leads_into_a_read_only_mount_writes_nothing_there(
    rootfs: Path, tmp_path: Path
) -> None:
    """The base's context is bound read-only at /context, and /etc/resolv.conf (network
    on) is bound after it: an image whose /etc is a symlink to /context made layerforge
    create an empty resolv.conf in the project's context directory on the host."""
    context = tmp_path / "context"
    context.mkdir()
    (context / "build.sh").write_text("true\n")
    (rootfs / "etc").symlink_to("/context")
    (rootfs / "context").mkdir()
    inv = Invocation(rootfs, ("/bin/sh", "-c", "true"), mounts=(Mount(context, "/context", True),),
                     network=True, privileges="system")  # fmt: skip
    with pytest.raises(SandboxError) as err:
        runners.prepare(inv)
    assert sorted(os.listdir(context)) == ["build.sh"]
    assert "cannot mount at /etc/resolv.conf" in str(err.value)
    assert "inside /context (read-only)" in str(err.value)


VSOCK_C = r"""
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
int main(void) {
    int s = socket(40 /* AF_VSOCK */, SOCK_STREAM, 0);
    if (s >= 0) { puts("created"); return 0; }
    printf("refused: %s\n", strerror(errno));
    return 1;
}
"""


@pytest.mark.parametrize("kind", ["verify", "system"])
def test_no_vsock_socket_in_the_sandbox(rootfs: Path, tmp_path: Path, kind: str) -> None:
    """AF_VSOCK talks to the hypervisor (the host of a VM build machine: this one is one),
    which the sandbox's network namespace may not confine: "no network" must cover it.
    (Only the socket is made: nothing is sent to this machine's hypervisor.)"""
    source = tmp_path / "vsock.c"
    source.write_text(VSOCK_C)
    proc.run(["gcc", "-static", "-O1", "-o", str(rootfs / "vsock"), str(source)])
    result = runners.run(Bwrap(), invocation(rootfs, kind, "/vsock", tmp_path))
    assert result.stdout == "refused: Operation not permitted\n", result.stdout + result.stderr
    assert result.returncode == 1
