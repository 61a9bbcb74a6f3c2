"""Version order for OSV ranges: PyPI (PEP 440, through ``packaging``) and Debian (Policy
5.6.12, written here: epoch, upstream version, revision; ``~`` sorts before anything)."""

from __future__ import annotations

import re
from collections.abc import Callable

from packaging.version import InvalidVersion, Version


def _order(char: str) -> int:
    if char == "~":
        return -1
    if char.isalpha():
        return ord(char)
    return ord(char) + 256


def _compare_part(a: str, b: str) -> int:
    """Debian's comparison of one upstream version or revision."""
    while a or b:
        na, nb = re.match(r"\D*", a).group(), re.match(r"\D*", b).group()  # type: ignore[union-attr]
        for i in range(max(len(na), len(nb))):
            ca = _order(na[i]) if i < len(na) else 0
            cb = _order(nb[i]) if i < len(nb) else 0
            if ca != cb:
                return -1 if ca < cb else 1
        a, b = a[len(na) :], b[len(nb) :]
        da, db = re.match(r"\d*", a).group(), re.match(r"\d*", b).group()  # type: ignore[union-attr]
        if int(da or 0) != int(db or 0):
            return -1 if int(da or 0) < int(db or 0) else 1
        a, b = a[len(da) :], b[len(db) :]
    return 0


def _split_debian(version: str) -> tuple[int, str, str]:
    epoch, _, rest = version.rpartition(":") if ":" in version else ("0", "", version)
    upstream, _, revision = rest.rpartition("-") if "-" in rest else (rest, "", "0")
    return int(epoch or 0), upstream, revision


def debian_compare(a: str, b: str) -> int:
    """-1, 0 or 1 as ``dpkg --compare-versions`` orders ``a`` and ``b``."""
    ea, ua, ra = _split_debian(a)
    eb, ub, rb = _split_debian(b)
    if ea != eb:
        return -1 if ea < eb else 1
    return _compare_part(ua, ub) or _compare_part(ra, rb)


def pypi_compare(a: str, b: str) -> int:
    try:
        va, vb = Version(a), Version(b)
    except InvalidVersion:
        return (a > b) - (a < b)
    return (va > vb) - (va < vb)


def comparator(ecosystem: str) -> Callable[[str, str], int]:
    return debian_compare if ecosystem.startswith("Debian") else pypi_compare
