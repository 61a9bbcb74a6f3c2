"""``layerforge init``: a starter manifest a user can build right away."""

from __future__ import annotations

from pathlib import Path

from layerforge.errors import UsageError
from layerforge.fsutil import atomic_write
from layerforge.manifest.messages import MANIFEST_NAME
from layerforge.manifest.model import PROJECT_NAME_RE, project_name_suggestion

STARTER = """\
# layerforge.toml: one base image for the fleet, one service on it.
# Reference: docs/manifest.md.  Next: `layerforge lock`, then `layerforge build`.

[project]
name = "{name}"
python = "3.11"                       # must match the Python of the OS source

[bases.cpu]
from = {{ debootstrap = "bookworm" }}   # a Debian root filesystem, no registry needed
requirements = ["six"]               # shared by every service on this base
verify = ["import six"]

# [services.api]
# base = "cpu"
# source = "services/api"            # the only thing in the service's own layer
# command = ["python", "-m", "api"]
"""


def write_starter(directory: Path, name: str | None) -> Path:
    if name is not None and not PROJECT_NAME_RE.match(name):
        raise UsageError(
            f"--name {name!r} is not a valid image repository name",
            hint="use lowercase letters and digits, separated by '.', '_' or '-', "
            f"e.g. --name {project_name_suggestion(name)}",
        )
    blocker = next((d for d in (directory, *directory.parents) if d.exists()), None)
    if blocker is not None and not blocker.is_dir():
        where = "" if blocker == directory else f" ({blocker} is a file)"
        raise UsageError(
            f"{directory} is not a directory{where}",
            hint="pass the directory to write layerforge.toml in (created if missing)",
        )
    path = directory / MANIFEST_NAME
    if path.exists():
        raise UsageError(
            f"{path} already exists; layerforge init never overwrites a manifest",
            hint="edit it, or remove it first",
        )
    directory.mkdir(parents=True, exist_ok=True)
    project = name or project_name_suggestion(directory.name)
    atomic_write(path, STARTER.format(name=project).encode())
    return path
