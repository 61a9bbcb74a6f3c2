"""What every OS source produces: a :class:`BaseImage` (layers in the store, identity,
environment, Python, C library), the :class:`SourceContext` it is materialized with, and the
helpers the kinds share (the OS layer of a directory, the image of a manifest already in a store).

The kinds themselves live beside this module (debootstrap, rootfs, ocilayout, registry) and
are registered in :data:`layerforge.sources.materialize.MATERIALIZERS`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layerforge import cachedir
from layerforge.errors import SourceError
from layerforge.events import Event, Reporter
from layerforge.lock.lockfile import DebPackage
from layerforge.oci.compress import open_layer
from layerforge.oci.config import RegistryConfig
from layerforge.oci.layer import Layer, annotated_size
from layerforge.oci.layout import Descriptor, Store
from layerforge.oci.tarball import entries_from_tree
from layerforge.oci.unpack import unpack_image
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
# the version-definition names of glibc's libc.so.6 (GLIBC_2.36, GLIBC_2.2.5): the highest one is
# its version, read without running anything from the root filesystem
_GLIBC_RE = re.compile(rb"GLIBC_(\d+)\.(\d+)(?:\.\d+)?\x00")
DEFAULT_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)


@dataclass(frozen=True)
class LibcInfo:
    """The C library of a root filesystem: ``glibc 2.36``, ``musl 1.2.5`` (version "" when a
    musl root has no package database to say)."""

    family: str  # "glibc" | "musl"
    version: str

    def describe(self) -> str:
        return f"{self.family} {self.version}".strip()

    def to_json(self) -> dict[str, str]:
        return {"family": self.family, "version": self.version}


@dataclass(frozen=True)
class BaseImage:
    """A materialized OS source: its layers in the store plus what a child needs to know."""

    identity: str  # sha256:... that feeds the content key of the root base
    description: str
    layers: tuple[Layer, ...]
    env: tuple[str, ...]  # KEY=VALUE from the source image config
    python: PythonInfo
    libc: LibcInfo | None = None  # None: none found (a stand-in root), or an old record

    def to_json(self) -> dict[str, Any]:
        return {
            "format": SOURCE_FORMAT,
            "identity": self.identity,
            "description": self.description,
            "layers": [layer.to_json() for layer in self.layers],
            "env": list(self.env),
            "python": {"executable": self.python.executable, "version": self.python.version},
            # always written (null: none found), so a record without the key is an old one
            # that has not looked yet (layerforge.sources.materialize looks again)
            "libc": self.libc.to_json() if self.libc is not None else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BaseImage:
        return cls(
            identity=str(data["identity"]),
            description=str(data["description"]),
            layers=tuple(Layer.from_json(x) for x in data["layers"]),
            env=tuple(str(e) for e in data["env"]),
            python=PythonInfo(str(data["python"]["executable"]), str(data["python"]["version"])),
            libc=_libc_from_json(data.get("libc")),
        )


def _libc_from_json(raw: Any) -> LibcInfo | None:
    return None if not raw else LibcInfo(str(raw["family"]), str(raw["version"]))


@dataclass(frozen=True)
class SourceContext:
    store: Store
    cache_dir: Path
    reporter: Reporter
    python: str  # the project's target MAJOR.MINOR
    compression: str = "gzip"
    mtime: int = 0
    pinned: str | None = None  # registry sources: the manifest digest the lock recorded
    registry: RegistryConfig | None = None  # registry sources: credentials, TLS, insecure hosts
    os_rows: tuple[DebPackage, ...] = ()  # debootstrap, lock version 2: the locked packages
    mirror: str | None = None  # debootstrap: the Debian archive (None: debootstrap's default)


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


def find_libc(rootfs: Path, arch: str = "x86_64") -> LibcInfo | None:
    """The C library of ``rootfs`` (None: neither glibc nor musl found), read from its files:
    glibc's version is the highest ``GLIBC_2.x`` version name in ``libc.so.6``; musl is its
    loader ``ld-musl-ARCH.so.1``, versioned by the apk database where there is one. Symlinks
    are followed inside the root (absolute targets re-rooted), never into the host."""
    for rel in (
        f"lib/{arch}-linux-gnu/libc.so.6",
        f"usr/lib/{arch}-linux-gnu/libc.so.6",
        "lib64/libc.so.6",
        "usr/lib64/libc.so.6",
        "lib/libc.so.6",
        "usr/lib/libc.so.6",
    ):
        path = resolve_inside(rootfs, rel)
        if path is not None:
            found = [(int(a), int(b)) for a, b in _GLIBC_RE.findall(path.read_bytes())]
            if found:
                major, minor = max(found)
                return LibcInfo("glibc", f"{major}.{minor}")
    for rel in (f"lib/ld-musl-{arch}.so.1", f"usr/lib/ld-musl-{arch}.so.1"):
        if resolve_inside(rootfs, rel) is not None:
            return LibcInfo("musl", _apk_version(rootfs, "musl"))
    return None


def _apk_version(rootfs: Path, package: str) -> str:
    """``V:`` of ``P:package`` in the apk database, without its ``-rN`` release ("" if none)."""
    path = resolve_inside(rootfs, "lib/apk/db/installed")
    if path is None:
        return ""
    for record in path.read_text(errors="replace").split("\n\n"):
        fields = dict(line.split(":", 1) for line in record.splitlines() if ":" in line)
        if fields.get("P") == package:
            return fields.get("V", "").split("-r")[0]
    return ""


def resolve_inside(rootfs: Path, rel: str, hops: int = 40) -> Path | None:
    """The regular file ``rel`` names inside ``rootfs`` as the image sees it: every symlink
    resolved against the root (an absolute target starts again at ``rootfs``; ``..`` stops
    at it), or None (missing, not a file, a symlink loop)."""
    todo = [p for p in rel.split("/") if p not in ("", ".")]
    done: list[str] = []
    while todo:
        part = todo.pop(0)
        if part == "..":
            if done:
                done.pop()
            continue
        path = rootfs.joinpath(*done, part)
        if path.is_symlink():
            hops -= 1
            if hops < 0:
                return None
            target = os.readlink(path)
            if target.startswith("/"):
                done = []
            todo = [p for p in target.split("/") if p not in ("", ".")] + todo
            continue
        done.append(part)
    path = rootfs.joinpath(*done)
    return path if path.is_file() and not path.is_symlink() else None


def layer_from_dir(ctx: SourceContext, rootfs: Path, label: str) -> Layer:
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


def image_from_manifest(
    manifest_digest: str, config: dict[str, Any], description: str, ctx: SourceContext, where: str
) -> BaseImage:
    manifest = ctx.store.read_json(manifest_digest)
    diff_ids = config.get("rootfs", {}).get("diff_ids", [])
    history = [h for h in config.get("history", []) if not h.get("empty_layer")]
    layers = []
    for index, raw in enumerate(manifest["layers"]):
        created = history[index].get("created_by", "") if index < len(history) else ""
        desc = Descriptor.from_json(raw)
        size = annotated_size(desc) or _tar_size(ctx.store, desc)
        layers.append(Layer.sized(desc, str(diff_ids[index]), str(created), size))
    rootfs = unpack_image(ctx.store, manifest_digest, cachedir.IMAGES.path(ctx.cache_dir))
    python = find_python(rootfs, ctx.python, where)
    env = tuple(config.get("config", {}).get("Env") or DEFAULT_ENV)
    return BaseImage(manifest_digest, description, tuple(layers), env, python, find_libc(rootfs))


def _tar_size(store: Store, desc: Descriptor) -> int:
    """Bytes of a foreign layer's tar, counted by decompressing its blob once."""
    total = 0
    with open_layer(store.blob_path(desc.digest)) as stream:
        while chunk := stream.read(1 << 20):
            total += len(chunk)
    return total


def mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
