"""A package that ships no wheel, built in the sandbox (issue 12, item 4).

A real Debian bookworm base (the machine's debootstrap cache) declares ``build_system``
(gcc, the libc and Python headers); its run step compiles ``libfoo.so`` from C source in the
context into /usr/local/lib. A local sdist, ``lfsd-pyfoo``, has a setuptools C extension
``pyfoo`` linking ``-lfoo``: setuptools comes from the build dependencies, which uv resolves
(from the default index) inside the sandbox. The image must import it, hold no compiler,
and a second build (fresh store, same cache) must take the built wheel from the cache.
"""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import pytest

from layerforge import proc
from layerforge.cli import main
from layerforge.oci.layout import Store
from tests.wheelkit import make_sdist

pytestmark = pytest.mark.integration

FOO_C = b"int foo_add(int a, int b) { return a + b; }\n"

PYFOO_C = b"""#define PY_SSIZE_T_CLEAN
#include <Python.h>

int foo_add(int a, int b);

static PyObject *add(PyObject *self, PyObject *args) {
    int a, b;
    if (!PyArg_ParseTuple(args, "ii", &a, &b)) return NULL;
    return PyLong_FromLong(foo_add(a, b));
}

static PyMethodDef methods[] = {{"add", add, METH_VARARGS, "a + b, by libfoo"}, {0}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "pyfoo", NULL, -1, methods};
PyMODINIT_FUNC PyInit_pyfoo(void) { return PyModule_Create(&module); }
"""

SETUP_PY = """from setuptools import Extension, setup
setup(
    name="lfsd_pyfoo",
    version="1.0",
    ext_modules=[Extension("pyfoo", ["pyfoo.c"], libraries=["foo"])],
)
"""

MANIFEST = """
[project]
name = "sdist"
python = "3.11"
find_links = ["dists"]

[bases.base]
from = { debootstrap = "bookworm" }
build_system = ["gcc", "libc6-dev", "make", "libpython3.11-dev"]
context = "ctx"
run = ["gcc -shared -fPIC -O2 -o /usr/local/lib/libfoo.so /context/foo.c && ldconfig"]

[bases.app]
from = "base"
requirements = ["lfsd-pyfoo==1.0"]
verify = ["import pyfoo; assert pyfoo.add(2, 3) == 5"]
"""


def write_project(root: Path) -> None:
    (root / "ctx").mkdir(parents=True)
    (root / "ctx/foo.c").write_bytes(FOO_C)
    make_sdist(root / "dists", "lfsd_pyfoo", "1.0", setup_py=SETUP_PY,
               files={"pyfoo.c": PYFOO_C})  # fmt: skip
    (root / "layerforge.toml").write_text(MANIFEST)


def build(root: Path, cache: Path, capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    capsys.readouterr()
    code = main(["build", "-f", str(root), "--cache-dir", str(cache), "--json"])
    err = capsys.readouterr().err
    assert code == 0, err[-4000:]
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


def members(root: Path, ref: str) -> set[str]:
    store = Store.open(root / ".layerforge", create=False)
    desc = store.resolve(ref)
    assert desc is not None
    names: set[str] = set()
    for layer in store.read_json(desc.digest)["layers"]:
        with tarfile.open(store.blob_path(layer["digest"])) as tf:
            names.update(tf.getnames())
    return names


def sdist_builds(events: list[dict[str, object]]) -> list[dict[str, object]]:
    return [e for e in events if str(e.get("task", "")).startswith("sdist:")
            and e.get("event") == "start"]  # fmt: skip


def test_sdist_with_a_c_extension_builds_in_the_sandbox_once(
    tmp_path: Path, shared_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    proc.run(["cp", "-al", str(shared_cache / "debootstrap"), str(cache / "debootstrap")])
    root = tmp_path / "project"
    write_project(root)
    assert main(["lock", "-f", str(root), "--cache-dir", str(cache)]) == 0
    assert 'kind = "sdist"' in (root / "layerforge.lock").read_text()
    first = build(root, cache, capsys)  # verify runs: pyfoo.add(2, 3) == 5
    assert len(sdist_builds(first)) == 1
    names = members(root, "app:latest")
    assert "usr/local/lib/libfoo.so" in names
    assert [n for n in names if n.startswith("usr/bin/gcc") or n.endswith("/cc1")] == []
    assert any(n.startswith("opt/venv/lib/python3.11/site-packages/pyfoo.") for n in names)
    # a fresh store, the same cache: the built wheel is reused, nothing is compiled again
    again = tmp_path / "again"
    shutil.copytree(root, again, ignore=shutil.ignore_patterns(".layerforge"))
    second = build(again, cache, capsys)
    assert sdist_builds(second) == []
    assert any("built wheel reused" in str(e.get("message", "")) for e in second)


def test_a_failing_sdist_build_names_the_node_and_build_system(
    tmp_path: Path, shared_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without build_system there is no compiler: the build fails with the builder's output,
    names the sdist and the node, and keeps nothing (no wheel cached, no image tagged)."""
    cache = tmp_path / "cache"
    cache.mkdir()
    proc.run(["cp", "-al", str(shared_cache / "debootstrap"), str(cache / "debootstrap")])
    root = tmp_path / "project"
    write_project(root)
    text = MANIFEST.replace(
        'build_system = ["gcc", "libc6-dev", "make", "libpython3.11-dev"]\n', ""
    )
    (root / "layerforge.toml").write_text(text.replace("&& ldconfig", "|| true"))
    assert main(["lock", "-f", str(root), "--cache-dir", str(cache)]) == 0
    capsys.readouterr()
    code = main(["build", "-f", str(root), "--cache-dir", str(cache)])
    err = capsys.readouterr().err
    assert code == 1
    assert "bases.app: building a wheel from lfsd_pyfoo-1.0.tar.gz failed" in err
    assert "gcc" in err  # the builder's own output: the compiler it did not find
    assert "build_system" in err
    assert "Traceback" not in err
    assert not any((cache / "built-wheels").glob("*/wheel.json"))
    assert Store.open(root / ".layerforge", create=False).resolve("app:latest") is None
