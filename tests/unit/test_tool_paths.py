"""Program paths are resolved safely from many threads at once (issue 10, item 3).

Regression: sibling nodes installing at once crashed with ``TypeError: can only concatenate
str (not "NoneType") to str`` from uv's ``find_uv_bin``: the first use of ``sysconfig`` in a
process is not thread-safe. The bug is in the FIRST use, so each trial is a fresh interpreter.
"""

from __future__ import annotations

import subprocess
import sys

from layerforge import proc

SCRIPT = """
import threading
from layerforge import proc

errors = []
barrier = threading.Barrier(16)

def resolve():
    barrier.wait()
    try:
        for tool in ("uv", "bwrap", "uv"):
            proc.which(tool)
    except Exception as exc:
        errors.append(repr(exc))

threads = [threading.Thread(target=resolve) for _ in range(16)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(len(errors), errors[:1])
"""


def test_which_from_many_threads_in_a_fresh_interpreter() -> None:
    for _ in range(8):
        out = subprocess.run(
            [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True
        )
        assert out.stdout.startswith("0 "), out.stdout


def test_tools_resolved_once_are_the_ones_which_finds() -> None:
    assert proc.which("uv") == proc.which("uv")
    assert proc.which("uv").endswith("uv")
