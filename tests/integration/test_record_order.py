"""A build writes a node's record before its tags: a build stopped between the two (kill -9)
leaves an untagged record, never a tag whose record is missing (which `verify` and `push`
then refused as "not built" until the next build)."""

from __future__ import annotations

from pathlib import Path

import pytest

from layerforge.oci.layout import Store
from layerforge.records import records_dir
from tests.integration.tiny import cli, tiny_project


def test_the_record_is_written_before_the_tags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tiny_project(tmp_path / "p")
    cache = tmp_path / "cache"
    assert cli("lock", "-f", str(project), "--cache-dir", str(cache))[0] == 0

    def stopped(self: Store, refs: dict[str, object]) -> None:
        raise KeyboardInterrupt  # where a kill -9 between the two writes would stop it

    monkeypatch.setattr(Store, "tag_many", stopped)
    code, _, _ = cli("build", "--no-verify", "-f", str(project), "--cache-dir", str(cache))
    assert code == 130  # the CLI reports the interrupt
    records = list(records_dir(project / ".layerforge").glob("*.json"))
    assert records, "the node's record was not written before its tags"
    monkeypatch.undo()
    code, _, err = cli("build", "--no-verify", "-f", str(project), "--cache-dir", str(cache))
    assert code == 0, err
    store = Store.open(project / ".layerforge", create=False)
    assert {"base:latest", "svc:latest"} <= set(store.tags())
