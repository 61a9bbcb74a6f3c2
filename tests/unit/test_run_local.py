"""``layerforge run``'s pure parts: the program a config runs, HOME from the image's passwd,
and LAYERFORGE_UPLOAD_CHUNK's parsing (item 4's one setting)."""

from __future__ import annotations

from pathlib import Path

import pytest

from layerforge.errors import UsageError
from layerforge.oci.config import upload_chunk
from layerforge.sandbox.launch import home_of, program


def test_program_is_entrypoint_plus_command_or_cmd() -> None:
    config = {"Entrypoint": ["/lf/launch"], "Cmd": ["python", "-m", "app"]}
    assert program(config, (), "api") == ("/lf/launch", "python", "-m", "app")
    assert program(config, ("sh",), "api") == ("/lf/launch", "sh")
    assert program({"Cmd": ["python"]}, ("id", "-u"), "api") == ("id", "-u")
    with pytest.raises(UsageError, match="neither an Entrypoint nor a Cmd"):
        program({}, (), "api")


def test_home_of_reads_the_images_passwd(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text(
        "root:x:0:0:root:/root:/bin/bash\napp:x:10001:10001::/home/app:/bin/sh\n"
    )
    assert home_of(tmp_path, "app") == "/home/app"
    assert home_of(tmp_path, "10001:10001") == "/home/app"
    assert home_of(tmp_path, "") == "/root"
    assert home_of(tmp_path, "nobody-here") == "/root"
    assert home_of(tmp_path / "missing", "app") == "/root"


def test_upload_chunk_setting() -> None:
    assert upload_chunk({}) is None
    assert upload_chunk({"LAYERFORGE_UPLOAD_CHUNK": "16MiB"}) == 16 << 20
    with pytest.raises(UsageError, match="below the smallest chunk"):
        upload_chunk({"LAYERFORGE_UPLOAD_CHUNK": "64KiB"})
    with pytest.raises(UsageError, match="LAYERFORGE_UPLOAD_CHUNK='lots'"):
        upload_chunk({"LAYERFORGE_UPLOAD_CHUNK": "lots"})
