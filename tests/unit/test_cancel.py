"""Ctrl-C stops work running in worker threads, and the programs they started."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from layerforge import proc


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    proc.reset_stop()
    yield
    proc.reset_stop()


def test_a_program_run_by_a_worker_thread_is_terminated_on_request() -> None:
    outcome: list[BaseException | None] = []

    def worker() -> None:
        try:
            proc.run(["sleep", "30"])
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    deadline = time.monotonic() + 10
    while not proc._RUNNING and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    proc.request_stop()
    thread.join(10)
    assert not thread.is_alive() and time.monotonic() - started < 5
    assert len(outcome) == 1 and isinstance(outcome[0], KeyboardInterrupt)
    assert not proc._RUNNING


def test_nothing_new_starts_after_a_request_and_reset_allows_it_again() -> None:
    proc.request_stop()
    with pytest.raises(KeyboardInterrupt):
        proc.run(["true"])
    proc.reset_stop()
    assert proc.run(["true"]).returncode == 0


def test_a_layer_write_stops_at_the_next_chunk() -> None:
    import io

    from layerforge.oci.tarball import Entry
    from layerforge.oci.write import write_layer

    entries = [Entry(f"f{i}", "file", 0o644, 1 << 20, data=b"x" * (1 << 20)) for i in range(64)]
    proc.request_stop()
    with pytest.raises(KeyboardInterrupt):
        write_layer(entries, io.BytesIO())
