"""Human sizes: parse "200MB" / "9GB" / 1024 and format bytes."""

from __future__ import annotations

import re
from decimal import Decimal

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
MAX_SIZE = 2**63 - 1  # bytes; what an OCI descriptor's size (int64) can hold
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(value: str | int) -> int:
    """``"200MB"`` -> 200_000_000; ``"1GiB"`` -> 1073741824; ints are bytes."""
    if isinstance(value, bool):
        raise ValueError("a size must be a number of bytes or a string like '200MB'")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return _at_most_max(value, str(value))
    match = _SIZE.match(value)
    if not match or match.group(2).lower() not in _UNITS:
        raise ValueError(f"{value!r} is not a size; write e.g. '200MB', '9GB' or '512MiB'")
    number = Decimal(match.group(1)) * _UNITS[match.group(2).lower()]
    return _at_most_max(int(number) if number <= MAX_SIZE else MAX_SIZE + 1, value)


def _at_most_max(size: int, shown: str) -> int:
    if size > MAX_SIZE:
        shown = shown if len(shown) <= 24 else f"{shown[:12]}...{shown[-8:]}"
        raise ValueError(f"{shown!r} is too large; a size is at most {MAX_SIZE} bytes (~9.2 EB)")
    return size


def format_size(n: int | float) -> str:
    """Decimal units, 3 significant digits: 814 MB, 1.2 GB, 512 B."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            if unit == "B":
                return f"{int(value)} B"
            return f"{value:.3g} {unit}" if value < 100 else f"{value:.0f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")  # pragma: no cover
