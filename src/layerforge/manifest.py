"""``layerforge.toml`` -> :class:`Project`: typed, frozen, validated once at the boundary.

Every error is a :class:`ManifestError` naming the file, the dotted key and the fix.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import importlib.util
import json
import os
import re
import shlex
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from packaging.utils import canonicalize_name

from layerforge import __version__
from layerforge.confine import Confinement, confinement
from layerforge.errors import ManifestError
from layerforge.requirements import Requirements, read_requirements
from layerforge.runtime_groups import RuntimeGroup, check_runtime, read_groups
from layerforge.sizes import parse_size

if TYPE_CHECKING:
    from pydantic import ValidationError

MANIFEST_NAME = "layerforge.toml"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
# One path component of an OCI repository name (distribution-spec), as archives are tagged
# PROJECT/NODE:TAG.
PROJECT_NAME_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
SourceKind = Literal["rootfs", "oci", "debootstrap", "registry"]
NodeKind = Literal["base", "service"]


@dataclass(frozen=True)
class OSSource:
    """Where a root base's filesystem comes from."""

    kind: SourceKind
    spec: str  # path, layout[:tag], suite, or registry reference, as written
    path: Path | None = None  # rootfs / oci: absolute path
    tag: str | None = None  # oci: tag inside the layout
    packages: tuple[str, ...] = ()  # debootstrap
    variant: str = "minbase"  # debootstrap

    def describe(self) -> str:
        if self.kind == "debootstrap":
            extra = f" + {', '.join(self.packages)}" if self.packages else ""
            return f"debootstrap {self.spec}{extra}"
        return f"{self.kind}:{self.spec}" if self.kind != "registry" else self.spec


@dataclass(frozen=True)
class Node:
    name: str
    kind: NodeKind
    parent: str | None  # base name; None for a root base
    os_source: OSSource | None  # only for root bases
    requirements: Requirements
    env: tuple[tuple[str, str], ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    verify: tuple[str, ...] = ()
    max_size: int | None = None
    compile_bytecode: bool = False
    system: tuple[str, ...] = ()
    run: tuple[str, ...] = ()
    network: bool = True
    context: Path | None = None  # bases: directory mounted at /context for run steps
    source: Path | None = None  # services: absolute path of the source tree
    command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    workdir: str | None = None
    runtime: tuple[RuntimeGroup, ...] = ()  # locked, not baked (runtime_groups.py)

    @property
    def section(self) -> str:
        return f"{'bases' if self.kind == 'base' else 'services'}.{self.name}"


@dataclass(frozen=True)
class Project:
    name: str
    python: str
    platforms: tuple[str, ...]
    root: Path  # directory holding layerforge.toml
    manifest: Path
    nodes: dict[str, Node] = field(default_factory=dict)  # topological order, parents first
    registry: str | None = None
    version: str | None = None
    layer_threshold: int = 200_000_000
    compression: Literal["gzip", "zstd"] = "gzip"
    index_url: str | None = None
    find_links: tuple[Path, ...] = ()
    source_date_epoch: int = 0

    def ancestors(self, name: str) -> list[Node]:
        """Parents of ``name``, nearest first."""
        out: list[Node] = []
        parent = self.nodes[name].parent
        while parent is not None:
            out.append(self.nodes[parent])
            parent = self.nodes[parent].parent
        return out

    def descendants(self, name: str) -> list[str]:
        out: list[str] = []
        for node in self.nodes.values():
            if any(a.name == name for a in self.ancestors(node.name)):
                out.append(node.name)
        return out

    def root_of(self, name: str) -> Node:
        chain = self.ancestors(name)
        return chain[-1] if chain else self.nodes[name]

    def select(self, names: tuple[str, ...] | list[str]) -> list[str]:
        """Names plus their ancestors, in build order; unknown names are a ManifestError."""
        wanted: set[str] = set()
        for name in names:
            if name not in self.nodes:
                raise ManifestError(
                    f"no node named {name!r}{did_you_mean(name, self.nodes)}",
                    file=str(self.manifest),
                    hint=f"nodes: {', '.join(self.nodes)}",
                )
            wanted.add(name)
            wanted.update(a.name for a in self.ancestors(name))
        return [n for n in self.nodes if n in wanted]


def did_you_mean(word: str, choices: object) -> str:
    options = [str(c) for c in choices]  # type: ignore[attr-defined]
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def find_manifest(start: Path) -> Path:
    """``start`` itself if it is a file, else ``start/layerforge.toml``."""
    path = start / MANIFEST_NAME if start.is_dir() else start
    if not path.is_file():
        raise ManifestError(
            f"{path} not found",
            hint="run `layerforge init` to create one, or pass --manifest PATH",
        )
    return path


def load(path: Path, cache_dir: Path | None = None) -> Project:
    """Parse and validate ``path``.

    With ``cache_dir``, the schema validation's result (a pure function of the TOML text and of
    the code that validates: see :func:`_code_fingerprint`) is remembered under
    ``cache_dir/manifest``, so that a build whose manifest did not change skips pydantic
    entirely. Everything that depends on other files
    (requirements files, source and context directories, OS sources) is checked on every load.
    """
    path = path.resolve()
    shown = str(path)
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise ManifestError(f"{path} not found", hint="run `layerforge init`") from None
    cached = _cache_file(cache_dir, text) if cache_dir is not None else None
    data = _read_cached(cached) if cached is not None else None
    if data is not None:
        try:
            return _build_project(data, path)
        except (KeyError, IndexError, TypeError, AttributeError, ValueError):
            pass  # an entry of another shape (damaged, edited by hand): validate again
    data = _validate(text, shown)
    project = _build_project(data, path)
    if cached is not None:  # only a manifest that is valid as a whole is remembered
        _write_cached(cached, data)
    return project


def _validate(text: bytes, shown: str) -> dict[str, Any]:
    """TOML text -> the manifest with every default filled in, as plain JSON data."""
    from pydantic import ValidationError  # noqa: PLC0415

    from layerforge.schema import ManifestModel  # noqa: PLC0415

    try:
        raw = tomllib.loads(text.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"invalid TOML: {exc}", file=shown) from None
    try:
        model = ManifestModel.model_validate(raw)
    except ValidationError as exc:
        raise _translate(exc, shown) from None
    data: dict[str, Any] = model.model_dump(mode="json", by_alias=True)
    return data


# The code a validation runs, relative to the package: this module, the schema and every
# layerforge module they import (a test checks this list against what importing them loads).
VALIDATION_MODULES = (
    "__init__.py",
    "confine.py",
    "errors.py",
    "manifest.py",
    "oci/__init__.py",
    "oci/reference.py",
    "requirements.py",
    "runtime_groups.py",
    "schema.py",
    "sizes.py",
)


def _code_fingerprint() -> bytes:
    """A digest of everything that decides what a validation returns, besides the TOML text:
    the bytes of :data:`VALIDATION_MODULES`, pydantic's version file (found without importing
    pydantic, which a cache hit never does) and Python's version (tomllib). About 0.3 ms."""
    package = Path(__file__).parent
    digest = hashlib.sha256(f"{__version__}\0{sys.version}\0".encode())
    for name in VALIDATION_MODULES:
        digest.update(name.encode() + b"\0" + _bytes_or_empty(package / name) + b"\0")
    spec = importlib.util.find_spec("pydantic")
    if spec is not None and spec.origin is not None:
        digest.update(_bytes_or_empty(Path(spec.origin).with_name("version.py")))
    return digest.digest()


def _bytes_or_empty(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:  # pragma: no cover - e.g. a zipped install: the version alone
        return b""


def _cache_file(cache_dir: Path, text: bytes) -> Path:
    digest = hashlib.sha256(_code_fingerprint() + b"\0" + text)
    return cache_dir / "manifest" / f"{digest.hexdigest()}.json"


def cache_entry(cache_dir: Path, manifest: Path) -> Path | None:
    """The validation-cache file the manifest's current text maps to (None if unreadable)."""
    try:
        return _cache_file(cache_dir, manifest.read_bytes())
    except OSError:
        return None


def _read_cached(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_cached(path: Path, data: dict[str, Any]) -> None:
    """Best effort: a cache that cannot be written only costs the next run some time."""
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(data, sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def _tuple(value: Any) -> tuple[str, ...]:
    return tuple(value) if value is not None else ()


def _build_project(data: dict[str, Any], path: Path) -> Project:
    """Validated manifest data (see :func:`_validate`) -> Project, checking the files it names."""
    shown = str(path)
    root = path.parent
    p = data["project"]
    _check_project_name(p["name"], shown)
    confine = confinement(root, _tuple(p.get("allow_outside")), file=shown)
    bases: dict[str, Any] = data["bases"]
    services: dict[str, Any] = data["services"]
    _check_names(bases, services, shown)
    nodes: dict[str, Node] = {}
    for name, base in bases.items():
        nodes[name] = _base_node(name, base, bases, confine, shown)
    for name, svc in services.items():
        nodes[name] = _service_node(name, svc, bases, confine, shown, services=services)
    ordered = _topological(nodes, shown)
    _check_pins(ordered, shown)
    check_runtime(ordered, shown)
    return Project(
        name=p["name"],
        python=p["python"],
        platforms=_tuple(p["platforms"]),
        root=root,
        manifest=path,
        nodes=ordered,
        registry=p["registry"],
        version=p["version"],
        layer_threshold=parse_size(p["layer_threshold"]),
        compression=p["compression"],
        index_url=p["index_url"],
        find_links=_find_links(_tuple(p["find_links"]), confine, shown),
        source_date_epoch=p["source_date_epoch"],
    )


def project_name_suggestion(name: str) -> str:
    """``name`` made a valid project name: lowercase, other characters become '-'."""
    parts = re.split(r"[^a-z0-9]+", name.lower())
    return "-".join(p for p in parts if p) or "fleet"


def _check_project_name(name: str, shown: str) -> None:
    if not PROJECT_NAME_RE.match(name):
        raise ManifestError(
            f"{name!r} is not a valid image repository name",
            file=shown,
            key="project.name",
            hint="use lowercase letters and digits, separated by '.', '_' or '-', "
            f"e.g. name = {project_name_suggestion(name)!r}",
        )


def _check_names(bases: dict[str, Any], services: dict[str, Any], shown: str) -> None:
    for section, names in (("bases", bases), ("services", services)):
        for name in names:
            if not NAME_RE.match(name):
                raise ManifestError(
                    f"{name!r} is not a valid image name",
                    file=shown,
                    key=f"{section}.{name}",
                    hint="use lowercase letters, digits, '.', '_' or '-', starting with a letter "
                    "or digit",
                )
    both = set(bases) & set(services)
    if both:
        name = sorted(both)[0]
        raise ManifestError(
            f"{name!r} is both a base and a service; image names must be unique",
            file=shown,
            key=f"services.{name}",
            hint="rename one of them",
        )
    if not bases:
        raise ManifestError(
            "no [bases.*] section: a fleet needs at least one base",
            file=shown,
            key="bases",
            hint='add e.g. [bases.cpu] with from = { debootstrap = "bookworm" }',
        )


def _find_links(links: tuple[str, ...], confine: Confinement, shown: str) -> tuple[Path, ...]:
    out: list[Path] = []
    for i, written in enumerate(links):
        key = f"project.find_links[{i}]"
        path = confine.resolve(
            written, base=confine.root, file=shown, key=key, what="find_links directory"
        )
        if not path.is_dir():
            raise ManifestError(
                f"find_links directory {written!r} does not exist (looked for {path})",
                file=shown,
                key=key,
                hint="point find_links at directories of wheels, relative to layerforge.toml",
            )
        out.append(path)
    return tuple(out)


def _parse_from(
    value: str | dict[str, Any], bases: dict[str, Any], confine: Confinement, shown: str, key: str
) -> tuple[str | None, OSSource | None]:
    root = confine.root
    if isinstance(value, dict):
        return None, OSSource(
            "debootstrap",
            value["debootstrap"],
            packages=_tuple(value["packages"]),
            variant=value["variant"],
        )
    if value in bases:
        return value, None
    if value.startswith("rootfs:"):
        spec = value.removeprefix("rootfs:")
        path = confine.resolve(spec, base=root, file=shown, key=key, what="root filesystem")
        if not path.exists():
            raise ManifestError(
                f"root filesystem {spec!r} does not exist (looked for {path})",
                file=shown,
                key=key,
                hint="point rootfs: at a directory or a .tar/.tar.gz of a root filesystem",
            )
        return None, OSSource("rootfs", spec, path=path)
    if value.startswith("oci:"):
        spec = value.removeprefix("oci:")
        layout, _, tag = spec.partition(":")
        path = (root / layout).resolve()
        if not (path / "oci-layout").is_file():
            raise ManifestError(
                f"{layout!r} is not an OCI image layout (no oci-layout file in {path})",
                file=shown,
                key=key,
                hint="use oci:DIR[:TAG] with a directory written by skopeo, umoci or layerforge",
            )
        return None, OSSource("oci", spec, path=path, tag=tag or None)
    if any(c in value for c in ":/@."):
        return None, OSSource("registry", value)
    raise ManifestError(
        f"no base named {value!r}{did_you_mean(value, bases)}",
        file=shown,
        key=key,
        hint="name a base defined under [bases], or an OS source such as "
        "'rootfs:DIR', 'oci:DIR:TAG' or { debootstrap = 'bookworm' }",
    )


def _requirements(node: dict[str, Any], confine: Confinement, shown: str, key: str) -> Requirements:
    value = node["requirements"]
    value = tuple(value) if isinstance(value, list) else value
    return read_requirements(
        value, root=confine.root, manifest=shown, key=f"{key}.requirements", confine=confine
    )


def _runtime(
    node: dict[str, Any], confine: Confinement, shown: str, key: str
) -> tuple[RuntimeGroup, ...]:
    return read_groups(
        node["runtime"], root=confine.root, manifest=shown, key=f"{key}.runtime", confine=confine
    )


def _common(node: dict[str, Any]) -> dict[str, Any]:
    return {
        "env": tuple(sorted(node["env"].items())),
        "labels": tuple(sorted(node["labels"].items())),
        "verify": _tuple(node["verify"]),
        "max_size": None if node["max_size"] is None else parse_size(node["max_size"]),
        "compile_bytecode": node["compile_bytecode"],
    }


def _base_node(
    name: str, base: dict[str, Any], bases: dict[str, Any], confine: Confinement, shown: str
) -> Node:
    key = f"bases.{name}"
    parent, source = _parse_from(base["from"], bases, confine, shown, f"{key}.from")
    return Node(
        name=name,
        kind="base",
        parent=parent,
        os_source=source,
        requirements=_requirements(base, confine, shown, key),
        system=_tuple(base["system"]),
        run=_tuple(base["run"]),
        network=base["network"],
        context=_context_dir(name, base["context"], confine, shown),
        runtime=_runtime(base, confine, shown, key),
        **_common(base),
    )


def _context_dir(name: str, context: str | None, confine: Confinement, shown: str) -> Path | None:
    if context is None:
        return None
    path = confine.resolve(
        context,
        base=confine.root,
        file=shown,
        key=f"bases.{name}.context",
        what="context directory",
    )
    if not path.is_dir():
        raise ManifestError(
            f"context directory {context!r} does not exist (looked for {path})",
            file=shown,
            key=f"bases.{name}.context",
            hint="point context at a directory relative to layerforge.toml",
        )
    return path


def _service_node(
    name: str,
    svc: dict[str, Any],
    bases: dict[str, Any],
    confine: Confinement,
    shown: str,
    services: dict[str, Any] | None = None,
) -> Node:
    key = f"services.{name}"
    if svc["base"] not in bases:
        base = svc["base"]
        is_service = base in (services or {})
        raise ManifestError(
            f"{base!r} is a service; a service can only sit on a base"
            if is_service
            else f"no base named {base!r}{did_you_mean(base, bases)}",
            file=shown,
            key=f"{key}.base",
            hint=f"bases defined: {', '.join(bases)}"
            + ("; to share code between services, put it in a base" if is_service else ""),
        )
    source: Path | None = None
    if svc["source"] is not None:
        source = confine.resolve(
            svc["source"],
            base=confine.root,
            file=shown,
            key=f"{key}.source",
            what="source directory",
        )
        if not source.is_dir():
            raise ManifestError(
                f"source directory {svc['source']!r} does not exist (looked for {source})",
                file=shown,
                key=f"{key}.source",
                hint="point source at the service's code, relative to layerforge.toml",
            )
    workdir: str = svc["workdir"]
    _check_workdir(workdir, shown, f"{key}.workdir")
    return Node(
        name=name,
        kind="service",
        parent=svc["base"],
        os_source=None,
        requirements=_requirements(svc, confine, shown, key),
        source=source,
        command=None if svc["command"] is None else tuple(svc["command"]),
        entrypoint=None if svc["entrypoint"] is None else tuple(svc["entrypoint"]),
        workdir=workdir,
        runtime=_runtime(svc, confine, shown, key),
        **_common(svc),
    )


def _check_workdir(workdir: str, shown: str, key: str) -> None:
    if not workdir.startswith("/"):
        raise ManifestError(
            f"workdir must be an absolute path, not {workdir!r}",
            file=shown,
            key=key,
            hint="e.g. workdir = '/app'",
        )
    inner = workdir.strip("/")
    if inner and any(part in ("", ".", "..") for part in inner.split("/")):
        normal = os.path.normpath(workdir)
        raise ManifestError(
            f"workdir {workdir!r} has an empty, '.' or '..' component",
            file=shown,
            key=key,
            hint=f"write the path without them, e.g. workdir = {normal!r}"
            if ".." not in workdir.split("/")
            else "write a plain absolute path such as workdir = '/app'",
        )


def _topological(nodes: dict[str, Node], shown: str) -> dict[str, Node]:
    ordered: dict[str, Node] = {}
    visiting: list[str] = []

    def visit(name: str) -> None:
        if name in ordered:
            return
        if name in visiting:
            cycle = [*visiting[visiting.index(name) :], name]
            raise ManifestError(
                f"bases form a cycle: {' -> '.join(cycle)}",
                file=shown,
                key=f"bases.{name}.from",
                hint="every chain of 'from' must end in an OS source",
            )
        visiting.append(name)
        parent = nodes[name].parent
        if parent is not None:
            visit(parent)
        visiting.pop()
        ordered[name] = nodes[name]

    for kind in ("base", "service"):
        for name, node in nodes.items():
            if node.kind == kind:
                visit(name)
    return ordered


def _check_pins(nodes: dict[str, Node], shown: str) -> None:
    """A child may not ask for a version that an ancestor pins with '=='."""
    for node in nodes.values():
        for dist, req in node.requirements.names().items():
            parent = node.parent
            while parent is not None:
                above = nodes[parent]
                pinned = above.requirements.names().get(dist)
                if pinned is not None:
                    _compare_pin(
                        node, req_text=str(req), above=above, pinned=str(pinned), shown=shown
                    )
                parent = above.parent


def _compare_pin(node: Node, *, req_text: str, above: Node, pinned: str, shown: str) -> None:
    from packaging.requirements import Requirement  # noqa: PLC0415

    pin = Requirement(pinned)
    exact = [s.version for s in pin.specifier if s.operator in ("==", "===")]
    child = Requirement(req_text)
    if exact and not any(child.specifier.contains(v, prereleases=True) for v in exact):
        raise ManifestError(
            f"{req_text!r} conflicts with {above.section}, which pins {pinned!r}",
            file=shown,
            key=f"{node.section}.requirements",
            hint=f"a base pin is never changed by a child: change the pin in {above.section}, "
            f"or relax {canonicalize_name(child.name)} here",
        )


def _translate(exc: ValidationError, shown: str) -> ManifestError:
    errors = exc.errors()
    # A value that fits no member of a union (`from`: a name or a debootstrap table) gets one
    # error per member: the one that went deepest is about what the user meant.
    parent = errors[0]["loc"][:-1]
    err = max((e for e in errors if e["loc"][: len(parent)] == parent), key=lambda e: len(e["loc"]))
    loc = [str(p) for p in err["loc"] if not str(p).startswith(("function-", "tagged-union"))]
    loc = [p for p in loc if p not in ("str", "DebootstrapModel", "tuple[str,...]", "int", "list")]
    key = ".".join(loc)
    if err["type"] == "extra_forbidden":
        return _unknown_key(loc, shown)
    if err["type"] == "missing":
        required = _required_hint(loc, shown)
        return ManifestError("this key is required", file=shown, key=key, hint=required)
    message, hint = _explain(err, loc)
    return ManifestError(message, file=shown, key=key, hint=hint)


def _explain(err: Any, loc: list[str]) -> tuple[str, str | None]:
    """The message and hint for a value of the wrong shape."""
    kind, value = err["type"], err.get("input")
    if kind == "string_pattern_mismatch" and loc == ["project", "python"]:
        return (
            f"python must be MAJOR.MINOR, not {value!r}",
            "e.g. python = '3.11' (the patch release is whatever the OS source ships)",
        )
    if loc == ["project", "source_date_epoch"] and kind in (
        "less_than_equal",
        "greater_than_equal",
    ):
        return (
            f"{value!r} is not a time an image can record (0 to 253402300799, the end of 9999)",
            "write a Unix time in seconds, e.g. the last commit's: git log -1 --format=%ct",
        )
    if kind == "tuple_type":
        return f"expected a list, not {_toml_kind(value)}", _list_hint(value, loc)
    if kind == "literal_error":
        return f"{value!r} is not one of the allowed values", (
            f"write {err.get('ctx', {}).get('expected', 'one of the documented values')}"
        )
    return str(err["msg"]).removeprefix("Value error, "), _type_hint(kind)


def _toml_kind(value: object) -> str:
    if isinstance(value, str):
        return f"the string {value!r}"
    return {bool: "a boolean", int: "a number", float: "a number", dict: "a table"}.get(
        type(value), "this value"
    )


def _list_hint(value: object, loc: list[str]) -> str:
    """A list written from what the user wrote: a command split like a shell would."""
    example: list[str] = ["a", "b"]
    if isinstance(value, str):
        example = [value]
        if loc[-1:] in (["command"], ["entrypoint"]):
            with contextlib.suppress(ValueError):
                example = shlex.split(value)
    return f"write a list, e.g. {json.dumps(example)}"


def _unknown_key(loc: list[str], shown: str) -> ManifestError:
    from layerforge.schema import (  # noqa: PLC0415
        BaseModelConfig,
        DebootstrapModel,
        ManifestModel,
        ProjectModel,
        ServiceModel,
    )

    word = loc[-1]
    model: type[Any]
    if len(loc) == 1:
        model = ManifestModel
    elif loc[0] == "project":
        model = ProjectModel
    elif loc[0] == "bases":
        model = BaseModelConfig if len(loc) == 3 else DebootstrapModel
    else:
        model = ServiceModel
    fields = [f.alias or n for n, f in model.model_fields.items()]
    return ManifestError(
        f"unknown key {word!r}{did_you_mean(word, fields)}",
        file=shown,
        key=".".join(loc),
        hint=f"allowed keys here: {', '.join(fields)}",
    )


def _required_hint(loc: list[str], shown: str = MANIFEST_NAME) -> str:
    if loc == ["project"] and Path(shown).name != MANIFEST_NAME:
        return (
            f"{Path(shown).name} has no [project] table; is it the manifest? "
            f"point -f at {MANIFEST_NAME} (or its directory)"
        )
    if loc and loc[-1] == "from":
        return "set from = 'PARENT' or an OS source, e.g. { debootstrap = 'bookworm' }"
    if loc and loc[-1] == "base":
        return "set base = 'NAME' of a base defined under [bases]"
    if loc == ["project"]:
        return "add a [project] table with at least name = '...'"
    return "add it"


def _type_hint(kind: str) -> str | None:
    return {
        "string_type": "write a quoted string",
        "tuple_type": 'write a list, e.g. ["a", "b"]',
        "bool_type": "write true or false",
        "int_type": "write a whole number",
        "dict_type": "write a table, e.g. { KEY = 'value' }",
    }.get(kind)
