"""Transfers that survive faults: where a download goes (a :class:`Sink` that can be reset),
streaming a 200/206 body into it, and naming a connection fault in words.

A download that breaks keeps the bytes that arrived (TCP delivers a prefix of the body) and
asks for the rest with ``Range: bytes=<held>-``; a 206 must start there, a 200 means the
server ignored the range and the sink starts over. A body that ends before its
``Content-Length`` is a fault (:mod:`http.client` returns ``b""`` there without a word).
"""

from __future__ import annotations

import http.client
from typing import Protocol

CHUNK = 1 << 20


class Sink(Protocol):
    """Where a download goes: ``size`` bytes held so far (all verified to be a prefix of
    the body, since TCP delivered them in order), ``reset`` discards them."""

    @property
    def size(self) -> int: ...

    def write(self, data: bytes, /) -> int: ...

    def reset(self) -> None: ...


class RangeIgnored(http.client.HTTPException):
    """A 206 that does not start where the download stands (the sink was reset)."""


def stream_into(resp: http.client.HTTPResponse, sink: Sink) -> None:
    """A 200 or 206 body into ``sink``; raises an HTTPException when it stops short."""
    if resp.status == 206:
        held = sink.size
        if range_start(resp.getheader("Content-Range") or "") != held:
            sink.reset()
            got = resp.getheader("Content-Range")
            raise RangeIgnored(f"asked for bytes {held}- and got {got}")
    elif sink.size:
        sink.reset()  # the server ignored Range and sends the whole body again
    while chunk := resp.read(CHUNK):
        sink.write(chunk)
    if resp.length:  # announced but never came (http.client returns b"" silently)
        raise http.client.IncompleteRead(b"", resp.length)


def range_start(content_range: str) -> int | None:
    """``bytes 100-199/200`` -> 100."""
    unit, _, spec = content_range.strip().partition(" ")
    first = spec.split("-", 1)[0]
    return int(first) if unit == "bytes" and first.isdigit() else None


def describe_fault(exc: BaseException) -> str:
    """What broke, in words, with the exception's own text."""
    if isinstance(exc, http.client.RemoteDisconnected):
        what = "the connection was closed before an answer arrived"
    elif isinstance(exc, http.client.IncompleteRead):
        what = f"the connection closed with {exc.expected} bytes of the body still to come"
    elif isinstance(exc, RangeIgnored):
        what = "the resumed download did not start where it stopped"
    elif isinstance(exc, BrokenPipeError):
        what = "the connection broke while sending (broken pipe)"
    elif isinstance(exc, ConnectionResetError):
        what = "the connection was reset"
    elif isinstance(exc, TimeoutError):
        what = "the connection timed out"
    else:
        what = "the connection failed"
    return f"{what} [{type(exc).__name__}: {exc}]"
