"""Issue 13 item 3: a wheel taken from a local ``find_links`` directory gets its real size in
the lock (pylock.toml leaves it out, and every figure built on lock sizes, the disk preflight
first, counted such wheels, torch included, as 0 bytes)."""

from __future__ import annotations

from pathlib import Path

from layerforge.lock.uv import parse_pylock
from layerforge.manifest import Node
from layerforge.manifest.requirements import Requirements
from tests.wheelkit import make_wheel, sha256_of

PYLOCK = """
lock-version = "1.0"
created-by = "uv"

[[packages]]
name = "big"
version = "1.0"
wheels = [{{ url = "{url}", hashes = {{ sha256 = "{sha}" }} }}]

[[packages]]
name = "rel"
version = "2.0"
wheels = [{{ path = "{rel}", hashes = {{ sha256 = "{sha}" }} }}]

[[packages]]
name = "remote"
version = "3.0"
[[packages.wheels]]
url = "https://files.example/remote-3.0-py3-none-any.whl"
hashes = {{ sha256 = "{sha}" }}
size = 1234

[[packages]]
name = "gone"
version = "4.0"
[[packages.wheels]]
url = "file:///nonexistent/gone-4.0-py3-none-any.whl"
hashes = {{ sha256 = "{sha}" }}
"""


def test_find_links_wheel_size_is_recorded(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    big = make_wheel(wheels, "big", "1.0", files={"big/data.bin": bytes(range(256)) * 400})
    rel = make_wheel(wheels, "rel", "2.0")
    work = tmp_path / "work"
    work.mkdir()
    text = PYLOCK.format(url=big.as_uri(), rel=f"../wheels/{rel.name}", sha=sha256_of(big))
    (work / "pylock.toml").write_text(text)
    node = Node("base", "base", None, None, Requirements((), "inline"))
    packages = parse_pylock(work / "pylock.toml", node)
    assert packages["big"].size == big.stat().st_size > 100_000
    assert packages["rel"].size == rel.stat().st_size > 0
    assert packages["remote"].size == 1234  # what the index said
    assert packages["gone"].size == 0  # unknown, as before
