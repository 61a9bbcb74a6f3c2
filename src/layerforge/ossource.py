"""OS sources of root bases: materialize them as layers in the store, find their Python.

Kinds (a dict of implementations, not a hierarchy):

- ``debootstrap``: run ``debootstrap`` once per (suite, variant, packages) and cache the root
  filesystem under the cache directory; its identity is the exact list of Debian packages.
- ``rootfs``: a directory or a ``.tar[.gz]`` of a root filesystem; identity = the layer diff_id.
- ``oci``: an image in a local OCI layout; identity = its manifest digest.
- ``registry``: a registry reference, pulled through :mod:`layerforge.oci.remote`;
  identity = the linux/amd64 manifest digest (the lock pins it).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from layerforge import proc
from layerforge.errors import SourceError
from layerforge.events import Event, Reporter
from layerforge.manifest import OSSource
from layerforge.oci.layer import Layer, annotated_size
from layerforge.oci.layout import Descriptor, Store, atomic_write
from layerforge.oci.tarball import entries_from_tree
from layerforge.oci.write import write_layer_to_store
from layerforge.records import PythonInfo

SOURCE_FORMAT = 1
_PY_RE = re.compile(r"^python3\.(\d+)$")
# Never part of an OS layer: kernel file systems, device nodes, package caches, logs.
_ROOTFS_EXCLUDE = (
    "dev/",
    "proc/",
    "sys/",
    "run/",
    "tmp/",
    "var/cache/apt/",
    "var/lib/apt/lists/",
    "var/log/",
)


@dataclass(frozen=True)
class BaseImage:
    """A materialized OS source: its layers in the store plus what a child needs to know."""

    identity: str  # sha256:... that feeds the content key of the root base
    description: str
    layers: tuple[Layer, ...]
    env: tuple[str, ...]  # KEY=VALUE from the source image config
    python: PythonInfo

    def to_json(self) -> dict[str, Any]:
        return {
            "format": SOURCE_FORMAT,
            "identity": self.identity,
            "description": self.description,
            "layers": [layer.to_json() for layer in self.layers],
            "env": list(self.env),
            "python": {"executable": self.python.executable, "version": self.python.version},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BaseImage:
        return cls(
            identity=str(data["identity"]),
            description=str(data["description"]),
            layers=tuple(Layer.from_json(x) for x in data["layers"]),
            env=tuple(str(e) for e in data["env"]),
            python=PythonInfo(str(data["python"]["executable"]), str(data["python"]["version"])),
        )


@dataclass(frozen=True)
class SourceContext:
    store: Store
    cache_dir: Path
    reporter: Reporter
    python: str  # the project's target MAJOR.MINOR
    compression: str = "gzip"
    mtime: int = 0
    pinned: str | None = None  # registry sources: the manifest digest the lock recorded


def _rootfs_exclude(rel: str) -> bool:
    probe = rel + "/"
    return any(probe.startswith(p) and probe != p for p in _ROOTFS_EXCLUDE)


def find_python(rootfs: Path, wanted: str, where: str) -> PythonInfo:
    found: dict[str, str] = {}
    for directory in ("usr/local/bin", "usr/bin"):
        base = rootfs / directory
        if not base.is_dir():
            continue
        for entry in sorted(base.iterdir()):
            match = _PY_RE.match(entry.name)
            if match and f"3.{match.group(1)}" not in found:
                found[f"3.{match.group(1)}"] = f"/{directory}/{entry.name}"
    if wanted in found:
        return PythonInfo(found[wanted], wanted)
    if not found:
        raise SourceError(
            f"{where}: no Python interpreter found (looked for python3.X in /usr/local/bin "
            "and /usr/bin)",
            hint="use an OS source that ships Python, e.g. add 'python3' to debootstrap packages",
        )
    raise SourceError(
        f"{where}: the image has Python {', '.join(sorted(found))} but project.python is "
        f"{wanted!r}; wheels for the wrong Python would not import",
        hint=f"set project.python = {sorted(found)[-1]!r}, or use an OS source with "
        f"Python {wanted}",
    )


def _layer_from_dir(ctx: SourceContext, rootfs: Path, label: str) -> Layer:
    entries = entries_from_tree(rootfs, "", exclude=_rootfs_exclude)
    task = f"source:{label}"
    ctx.reporter.emit(Event("start", task, f"writing OS layer of {label}"))
    blob = write_layer_to_store(
        ctx.store,
        entries,
        compression=_compression(ctx),
        mtime=ctx.mtime,
        progress=lambda n: ctx.reporter.emit(Event("progress", task, done=n)),
    )
    ctx.reporter.emit(Event("finish", task, data={"ok": True, "bytes": blob.uncompressed_size}))
    return Layer.from_blob(blob, f"layerforge: OS root filesystem ({label})")


def _compression(ctx: SourceContext) -> Any:
    return ctx.compression


# -- debootstrap --------------------------------------------------------------------------


def debootstrap_key(source: OSSource) -> str:
    doc = [SOURCE_FORMAT, source.spec, source.variant, sorted({"python3", *source.packages})]
    return hashlib.sha256(json.dumps(doc).encode()).hexdigest()[:24]


def debootstrap_rootfs(
    source: OSSource, cache_dir: Path, reporter: Reporter, where: str = "from"
) -> Path:
    """Run debootstrap once per inputs; return the cached root filesystem directory."""
    final = cache_dir / "debootstrap" / debootstrap_key(source)
    if (final / "rootfs").is_dir():
        return final / "rootfs"
    _check_suite(source.spec, where)
    final.parent.mkdir(parents=True, exist_ok=True)
    packages = ",".join(sorted({"python3", *source.packages}))
    work = Path(tempfile.mkdtemp(prefix=".tmp-", dir=final.parent))
    task = f"debootstrap:{source.spec}"
    reporter.emit(Event("start", task, f"debootstrap {source.spec} ({packages})"))
    try:
        proc.run(
            [
                "debootstrap",
                f"--variant={source.variant}",
                f"--include={packages}",
                source.spec,
                str(work / "rootfs"),
            ]
        )
        _normalize_debian(work / "rootfs")
        work.rename(final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    reporter.emit(Event("finish", task, data={"ok": True}))
    return final / "rootfs"


DEBOOTSTRAP_SCRIPTS = Path("/usr/share/debootstrap/scripts")


def _check_suite(suite: str, where: str, scripts: Path = DEBOOTSTRAP_SCRIPTS) -> None:
    """A suite debootstrap has no script for is a mistake in the manifest (exit 2)."""
    if not scripts.is_dir() or (scripts / suite).exists():
        return  # no debootstrap here: running it gives the real error
    from layerforge.manifest import did_you_mean  # noqa: PLC0415

    known = sorted(p.name for p in scripts.iterdir() if not p.name.startswith("."))
    raise SourceError(
        f"{where}: debootstrap knows no suite {suite!r}{did_you_mean(suite, known)}",
        hint="use a Debian or Ubuntu suite name such as 'bookworm' or 'trixie' "
        f"(scripts in {scripts})",
    )


def _normalize_debian(rootfs: Path) -> None:
    """Drop what differs between two runs and never belongs in a layer."""
    for rel in ("var/cache/apt", "var/lib/apt/lists", "var/log", "var/cache/debconf"):
        directory = rootfs / rel
        if directory.is_dir():
            for child in directory.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                elif child.name != "lock":
                    child.unlink()
    for stale in ("var/cache/ldconfig/aux-cache", "etc/machine-id"):
        (rootfs / stale).unlink(missing_ok=True)


def _dpkg_identity(rootfs: Path) -> str:
    status = rootfs / "var/lib/dpkg/status"
    pkgs: list[str] = []
    name = ""
    for line in status.read_text(errors="replace").splitlines():
        if line.startswith("Package: "):
            name = line.split(": ", 1)[1]
        elif line.startswith("Version: ") and name:
            pkgs.append(f"{name}={line.split(': ', 1)[1]}")
    raw = json.dumps(sorted(pkgs)).encode()
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def _materialize_debootstrap(source: OSSource, ctx: SourceContext, where: str) -> BaseImage:
    rootfs = debootstrap_rootfs(source, ctx.cache_dir, ctx.reporter, where)
    python = find_python(rootfs, ctx.python, where)
    layer = _layer_from_dir(ctx, rootfs, source.describe())
    return BaseImage(_dpkg_identity(rootfs), source.describe(), (layer,), _DEFAULT_ENV, python)


_DEFAULT_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)


# -- rootfs -------------------------------------------------------------------------------


def _materialize_rootfs(source: OSSource, ctx: SourceContext, where: str) -> BaseImage:
    assert source.path is not None
    path = source.path
    if path.is_dir():
        python = find_python(path, ctx.python, where)
        layer = _layer_from_dir(ctx, path, source.describe())
    else:
        from layerforge.oci.unpack import unpack_layers  # noqa: PLC0415

        digest = _file_sha256(path)
        target = ctx.cache_dir / "rootfs" / digest[:24]
        if not target.is_dir():
            tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=_mkdir(target.parent)))
            try:
                unpack_layers([(path, _tar_media(path))], tmp)
                tmp.rename(target)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        python = find_python(target, ctx.python, where)
        layer = _layer_from_dir(ctx, target, source.describe())
    return BaseImage(layer.diff_id, source.describe(), (layer,), _DEFAULT_ENV, python)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _tar_media(path: Path) -> str:
    from layerforge.oci import media  # noqa: PLC0415

    if path.name.endswith((".tar.gz", ".tgz")):
        return media.OCI_LAYER_GZIP
    if path.name.endswith(".tar.zst"):
        return media.OCI_LAYER_ZSTD
    return media.OCI_LAYER_TAR


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# -- oci layout ---------------------------------------------------------------------------


def _materialize_oci(source: OSSource, ctx: SourceContext, where: str) -> BaseImage:
    """Import into a staging store first: an image refused (no such tag, the wrong Python)
    leaves no blob in the project's store."""
    from layerforge.oci.importer import copy_image, import_image  # noqa: PLC0415

    assert source.path is not None
    src = Store.open(source.path, create=False)
    staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=_mkdir(ctx.cache_dir / "stage")))
    try:
        staged = Store.open(staging)
        manifest_digest, config = import_image(src, source.tag, staged, where)
        image = _image_from_manifest(
            manifest_digest, config, source.describe(), replace(ctx, store=staged), where
        )
        copy_image(staged, manifest_digest, ctx.store, link=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return image


def _image_from_manifest(
    manifest_digest: str, config: dict[str, Any], description: str, ctx: SourceContext, where: str
) -> BaseImage:
    from layerforge.oci.unpack import unpack_image  # noqa: PLC0415

    manifest = ctx.store.read_json(manifest_digest)
    diff_ids = config.get("rootfs", {}).get("diff_ids", [])
    history = [h for h in config.get("history", []) if not h.get("empty_layer")]
    layers = []
    for index, raw in enumerate(manifest["layers"]):
        created = history[index].get("created_by", "") if index < len(history) else ""
        desc = Descriptor.from_json(raw)
        size = annotated_size(desc) or _tar_size(ctx.store, desc)
        layers.append(Layer.sized(desc, str(diff_ids[index]), str(created), size))
    rootfs = unpack_image(ctx.store, manifest_digest, ctx.cache_dir / "unpacked")
    python = find_python(rootfs, ctx.python, where)
    env = tuple(config.get("config", {}).get("Env") or _DEFAULT_ENV)
    return BaseImage(manifest_digest, description, tuple(layers), env, python)


def _tar_size(store: Store, desc: Descriptor) -> int:
    """Bytes of a foreign layer's tar, counted by decompressing its blob once."""
    from layerforge.oci.compress import open_layer  # noqa: PLC0415

    total = 0
    with open_layer(store.blob_path(desc.digest)) as stream:
        while chunk := stream.read(1 << 20):
            total += len(chunk)
    return total


def _materialize_registry(source: OSSource, ctx: SourceContext, where: str) -> BaseImage:
    from layerforge.oci.remote import materialize_reference  # noqa: PLC0415

    return materialize_reference(source, ctx, where)


MATERIALIZERS: dict[str, Callable[[OSSource, SourceContext, str], BaseImage]] = {
    "debootstrap": _materialize_debootstrap,
    "rootfs": _materialize_rootfs,
    "oci": _materialize_oci,
    "registry": _materialize_registry,
}


def record_path(store: Store, source: OSSource) -> Path:
    spec = json.dumps([source.kind, source.spec, list(source.packages), source.variant])
    key = hashlib.sha256(spec.encode()).hexdigest()[:24]
    return store.root / "layerforge" / "sources" / f"{key}.json"


def materialize(source: OSSource, ctx: SourceContext, where: str, *, refresh: bool) -> BaseImage:
    """The OS source as layers in the store, reusing the last record unless ``refresh``."""
    path = record_path(ctx.store, source)
    if not refresh and path.is_file():
        image = BaseImage.from_json(json.loads(path.read_text()))
        pinned = source.kind != "registry" or ctx.pinned in (None, image.identity)
        same_python = image.python.version == ctx.python  # else look for it again (and refuse)
        if (
            pinned
            and same_python
            and all(ctx.store.has_blob(x.descriptor.digest) for x in image.layers)
        ):
            return image
    image = MATERIALIZERS[source.kind](source, ctx, where)
    atomic_write(path, json.dumps(image.to_json(), indent=2, sort_keys=True).encode())
    return image
