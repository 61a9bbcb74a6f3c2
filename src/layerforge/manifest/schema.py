"""The raw shape of ``layerforge.toml``: pydantic models, the single source of truth.

``load.py`` validates TOML against these models and ``parse.py`` turns the result into the
frozen :class:`layerforge.manifest.Project`. ``json_schema()`` is generated from the same
models and shipped as ``layerforge.schema.json``.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator

from layerforge.manifest import nonroot
from layerforge.manifest.model import MAX_EPOCH, check_group_name
from layerforge.manifest.tags import check_repository, check_template
from layerforge.oci.reference import namespace_problem
from layerforge.sizes import parse_size


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# Debian policy: lowercase letters, digits, '+', '-', '.', at least two characters, starting
# with a letter or digit. apt also takes NAME:ARCH, NAME=VERSION and NAME/RELEASE.
DEBIAN_PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
APT_PACKAGE_RE = re.compile(
    r"^[a-z0-9][a-z0-9+.-]+(?::[a-z0-9-]+)?(?:=[A-Za-z0-9.+~:-]+|/[A-Za-z0-9.+-]+)?$"
)


def _packages(value: tuple[str, ...], pattern: re.Pattern[str], example: str) -> tuple[str, ...]:
    for name in value:
        if not pattern.match(name):
            raise ValueError(f"{name!r} is not a valid Debian package name; write e.g. {example}")
    return value


def _not_bool(value: object) -> object:
    """A size given as true/false: pydantic would read it as 1 or 0 bytes."""
    if isinstance(value, bool):
        raise ValueError(
            f"a size must be a number of bytes or a string like '200MB', not {str(value).lower()}"
        )
    return value


def _size(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, str | int):
        return parse_size(value)
    raise ValueError("a size must be a number of bytes or a string like '200MB'")


def _plain(value: object) -> object:
    """A nested model as the dict it was written as (unset keys left out)."""
    return value.model_dump(exclude_none=True) if isinstance(value, BaseModel) else value


Size = Annotated[
    int | str,
    Field(description="Bytes, or a string such as '200MB', '9GB', '512MiB'."),
]


class IndexModel(_Model):
    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$",
        description="Name of the index: what [project.sources] and the lock use, and what "
        "uv's credential variables UV_INDEX_<NAME>_USERNAME/_PASSWORD are named after.",
    )
    url: str = Field(
        description="PEP 503 simple index URL, without credentials (they come from "
        "UV_INDEX_<NAME>_USERNAME/_PASSWORD or netrc).",
    )
    explicit: StrictBool = Field(
        False, description="Only packages pinned to it in [project.sources] come from it."
    )
    default: StrictBool = Field(
        False, description="The index used for everything else, instead of PyPI (at most one)."
    )


class ProjectModel(_Model):
    name: str = Field(description="Name of the fleet; images are named after their node.")
    python: str = Field(
        "3.11", pattern=r"^3\.\d{1,2}$", description="Target interpreter, MAJOR.MINOR."
    )
    platforms: tuple[str, ...] = Field(
        ("linux/amd64",), description="Target platforms; only linux/amd64 is built today."
    )
    registry: str | None = Field(
        None, description="Registry namespace to push to, e.g. 'registry.example/acme'."
    )
    version: str | None = Field(None, description="Project version, pushed as a tag.")
    version_labels: bool = Field(
        True,
        description="Label the images with the version and the --revision "
        "(org.opencontainers.image.version/revision). Not part of any content key: a bump "
        "writes a new config and manifest per image, or nothing at all when false.",
    )
    layer_threshold: Size = Field(
        "200MB",
        description="Distributions whose installed size exceeds this get a layer of their own.",
    )
    compression: Literal["gzip", "zstd"] = "gzip"
    index_url: str | None = Field(
        None,
        description="Package index for uv (default: PyPI); an older spelling of a "
        "[[project.index]] with default = true.",
    )
    index: tuple[IndexModel, ...] = Field(
        (),
        description="Named package indexes, in priority order (uv's first-index strategy: "
        "the first index that has a package provides all its versions).",
    )
    sources: dict[str, str] = Field(
        default_factory=dict,
        description="Distribution name -> index name: that distribution (wherever it is "
        "required, runtime groups included) comes from that index only.",
    )
    find_links: tuple[str, ...] = Field(
        (), description="Extra directories of wheels for uv (--find-links), relative paths allowed."
    )
    allow_outside: tuple[str, ...] = Field(
        (),
        description="Directories outside the project that source, context, requirements, "
        "find_links and rootfs: may name (never '/'); by default every path the manifest names "
        "must resolve inside the project directory.",
    )
    source_date_epoch: int = Field(
        0,
        ge=0,
        le=MAX_EPOCH,
        description="mtime written into every layer entry (SOURCE_DATE_EPOCH).",
    )
    cache_max: Size | None = Field(
        None,
        description="Cap on the layers and roots unpacked under the cache directory for "
        "verify, system steps and bytecode (least recently used go first, after a build and "
        "in gc); default: half of the free space plus what they take.",
    )

    @field_validator("layer_threshold", mode="before")
    @classmethod
    def _threshold_not_bool(cls, value: object) -> object:
        return _not_bool(value)

    @field_validator("cache_max", mode="before")
    @classmethod
    def _cache_max_not_bool(cls, value: object) -> object:
        return _not_bool(value)

    @field_validator("cache_max")
    @classmethod
    def _check_cache_max(cls, value: int | str | None) -> int | str | None:
        _size(value)
        return value

    @field_validator("registry")
    @classmethod
    def _check_registry(cls, value: str | None) -> str | None:
        if value is not None:
            problem = namespace_problem(value)
            if problem is not None:
                raise ValueError(
                    f"{value!r} is not a registry namespace: {problem}; write HOST[:PORT][/PATH], "
                    "e.g. '127.0.0.1:5000/acme'"
                )
        return value

    @field_validator("layer_threshold")
    @classmethod
    def _check_threshold(cls, value: int | str) -> int | str:
        _size(value)
        return value

    @field_validator("platforms")
    @classmethod
    def _check_platforms(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for platform in value:
            if platform != "linux/amd64":
                raise ValueError(f"platform {platform!r} is not supported yet; use 'linux/amd64'")
        if not value:
            raise ValueError("at least one platform is required")
        return value


class DebootstrapModel(_Model):
    debootstrap: str = Field(description="Debian suite, e.g. 'bookworm'.")
    packages: tuple[str, ...] = Field((), description="Extra Debian packages to include.")
    variant: Literal["minbase", "buildd", "fakechroot"] = Field(
        "minbase", description="debootstrap --variant."
    )

    @field_validator("packages")
    @classmethod
    def _check_packages(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _packages(value, DEBIAN_PACKAGE_RE, "'python3' or 'libgomp1'")


Requirements = str | tuple[str, ...]


class RuntimeGroupModel(_Model):
    """A runtime group with what it needs to run, beside the plain list form."""

    requirements: Requirements = Field(
        description="PEP 508 lines inline, or a path to a requirements file."
    )
    needs: tuple[Literal["gpu"], ...] = Field(
        (),
        description="What the group needs to run: 'gpu'. `layerforge-runtime list --json` "
        "reports whether the host has it (and the disk space) before an install.",
    )


class UserModel(_Model):
    name: str | None = Field(None, description="User name (created when the image lacks it).")
    uid: StrictInt | None = Field(None, description="uid (default 10001).")
    gid: StrictInt | None = Field(None, description="Primary gid (default: the uid).")
    home: str | None = Field(None, description="Home directory (default /home/NAME).")


class HealthcheckModel(_Model):
    command: str | tuple[str, ...] = Field(
        description="Exec form (a list, Docker's CMD) or one shell line (CMD-SHELL)."
    )
    interval: str | None = Field(None, description="Time between checks, e.g. '30s'.")
    timeout: str | None = Field(None, description="Time a check may take, e.g. '5s'.")
    start_period: str | None = Field(None, description="Start-up grace period, e.g. '10s'.")
    retries: StrictInt | None = Field(None, description="Failures in a row that mean unhealthy.")


class _NodeModel(_Model):
    requirements: Requirements | None = Field(
        None,
        description="PEP 508 lines inline, or a path to a requirements file or pyproject.toml.",
    )
    env: dict[str, str] = Field(default_factory=dict, description="Environment of the image.")
    verify: tuple[str, ...] = Field(
        (), description="Python statements (or 'sh:' commands) that must succeed in the image."
    )
    max_size: Size | None = Field(None, description="Size budget of the whole image.")
    labels: dict[str, str] = Field(default_factory=dict, description="Extra image labels.")
    compile_bytecode: StrictBool = Field(
        False,
        description="Byte-compile this node's wheels with the image's own Python (in the "
        "sandbox) into its dependency layers.",
    )
    repository: str | None = Field(
        None,
        description="Repository under project.registry the node is pushed to (default: its "
        "name); nodes sharing one each need their own `tags`.",
    )
    tags: tuple[str, ...] | None = Field(
        None,
        description="Tags pushed besides lf-<key> (always pushed: the remote cache finds images "
        "by it), as templates with {version} {commit} {key} {node} {project}; a template "
        "whose value is missing (no {commit} outside a clean checkout) is skipped. Default: "
        "latest, the version and the commit.",
    )
    runtime: dict[str, Requirements | RuntimeGroupModel] = Field(
        default_factory=dict,
        description="Runtime groups: { GROUP = [PEP 508 lines] or 'requirements file' or "
        "{ requirements = ..., needs = ['gpu'] } }, locked but not baked; installed on first "
        "use by `layerforge-runtime ensure GROUP`.",
    )
    user: StrictStr | StrictInt | UserModel | None = Field(
        None,
        description="Run as this user: a name ('app'), uid ('10001'), 'uid:gid', or a table "
        "{ name, uid, gid, home }; created with a home when the image lacks it (uid 10001 "
        "unless given). Written numerically into the image config. A service inherits its "
        "base's user.",
    )
    writable: tuple[str, ...] = Field(
        (),
        description="Directories created (or taken over) owned by the user; everything else, "
        "the application and /opt/venv included, stays read-only for it.",
    )
    expose: tuple[StrictInt | StrictStr, ...] = Field(
        (), description="Ports the service listens on: 8000 or '9000/udp' (ExposedPorts)."
    )
    healthcheck: HealthcheckModel | StrictBool | None = Field(
        None,
        description="Docker's health check: { command, interval, timeout, start_period, "
        "retries }; false turns an inherited one off.",
    )

    @field_validator("max_size", mode="before")
    @classmethod
    def _size_not_bool(cls, value: object) -> object:
        return _not_bool(value)

    @field_validator("max_size")
    @classmethod
    def _check_size(cls, value: int | str | None) -> int | str | None:
        _size(value)
        return value

    @field_validator("runtime")
    @classmethod
    def _check_runtime(
        cls, value: dict[str, Requirements | RuntimeGroupModel]
    ) -> dict[str, Requirements | RuntimeGroupModel]:
        for name in value:
            check_group_name(name)
        return value

    @field_validator("user")
    @classmethod
    def _check_user(cls, value: object) -> object:
        nonroot.check_user(_plain(value))
        return value

    @field_validator("writable")
    @classmethod
    def _check_writable(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return nonroot.check_writable(value)

    @field_validator("expose")
    @classmethod
    def _check_expose(cls, value: tuple[int | str, ...]) -> tuple[int | str, ...]:
        return nonroot.check_expose(value)

    @field_validator("healthcheck")
    @classmethod
    def _check_healthcheck(cls, value: object) -> object:
        nonroot.check_healthcheck(_plain(value))
        return value

    @field_validator("repository")
    @classmethod
    def _check_repository(cls, value: str | None) -> str | None:
        if value is not None:
            check_repository(value)
        return value

    @field_validator("tags")
    @classmethod
    def _check_tags(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for template in value or ():
            check_template(template)
        return value

    @field_validator("env")
    @classmethod
    def _check_env(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
                raise ValueError(f"{key!r} is not a valid environment variable name")
        return value


class BaseModelConfig(_NodeModel):
    from_: str | DebootstrapModel = Field(
        alias="from",
        description="Parent base name, or an OS source: 'rootfs:PATH', 'oci:LAYOUT[:TAG]', "
        "a registry reference, or { debootstrap = SUITE, packages = [...] }.",
    )
    version: str | None = Field(
        None,
        description="This base's version (default: project.version): its version label and "
        "the {version} of its tags; not part of any content key.",
    )
    system: tuple[str, ...] = Field((), description="Debian packages installed with apt.")
    build_system: tuple[str, ...] = Field(
        (),
        description="Debian packages present for the run steps and for building source "
        "distributions (compilers, headers), absent from every image.",
    )
    run: tuple[str, ...] = Field((), description="Shell steps run in the sandbox.")
    network: StrictBool = Field(True, description="Allow network access to system/run steps.")
    context: str | None = Field(
        None,
        description="Directory mounted read-only at /context during run steps; its files are "
        "part of the content key.",
    )

    @field_validator("system", "build_system")
    @classmethod
    def _check_system(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _packages(value, APT_PACKAGE_RE, "'libgomp1', 'curl=7.88.1-10' or 'gcc-12'")


class ServiceModel(_NodeModel):
    base: str = Field(description="The base this service runs on.")
    source: str | None = Field(None, description="Directory copied into the application layer.")
    command: tuple[str, ...] | None = Field(None, description="Default command (image Cmd).")
    entrypoint: tuple[str, ...] | None = Field(None, description="Image Entrypoint.")
    workdir: str = Field("/app", description="Working directory; the source is copied here.")


class SuggestModel(_Model):
    pools: dict[str, tuple[str, ...]] = Field(
        default_factory=dict,
        description="`layerforge suggest`: node pools, { POOL = [services placed on it] }; "
        "every other service gets a node of its own.",
    )


class ManifestModel(_Model):
    project: ProjectModel
    bases: dict[str, BaseModelConfig] = Field(default_factory=dict)
    services: dict[str, ServiceModel] = Field(default_factory=dict)
    suggest: SuggestModel = Field(default_factory=SuggestModel)


def keys_at(loc: list[str]) -> list[str]:
    """The keys allowed in the table where ``loc`` (an unknown key's location) sits."""
    model: type[BaseModel]
    nested: dict[str, type[BaseModel]] = {"user": UserModel, "healthcheck": HealthcheckModel}
    if len(loc) == 1:
        model = ManifestModel
    elif len(loc) == 5 and loc[2] == "runtime":  # [bases|services].NAME.runtime.GROUP.KEY
        model = RuntimeGroupModel
    elif loc[0] in ("bases", "services") and len(loc) == 4 and loc[2] in nested:
        model = nested[loc[2]]
    elif loc[0] == "project":
        model = IndexModel if loc[1:2] == ["index"] and len(loc) == 4 else ProjectModel
    elif loc[0] == "suggest":
        model = SuggestModel
    elif loc[0] == "bases":
        model = BaseModelConfig if len(loc) == 3 else DebootstrapModel
    else:
        model = ServiceModel
    return [f.alias or n for n, f in model.model_fields.items()]


def json_schema() -> dict[str, Any]:
    schema = ManifestModel.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "layerforge.toml"
    return schema


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"
