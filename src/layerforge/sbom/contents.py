"""What an image's layers hold, for its SBOM: Debian packages, Python distributions, the
interpreter, and the layer each comes from.

One pass over each layer tar (:func:`layer_contents`) reads the last ``var/lib/dpkg/status``
in it, every ``*.dist-info/METADATA`` under a ``site-packages`` directory, the whiteouts of
distributions, ``etc/os-release`` and the ``python*`` executables. The result is kept in the
store's bookkeeping by layer digest (``records.contents_dir``), so the images of a fleet that
share a base read its layers once. :func:`image_contents` then walks an image's layers in order:
a Debian package belongs to the layer whose status first lists its version (dpkg's database
lives in the OS and system layers, each holding the whole file), a distribution to the last
layer that wrote its METADATA.
"""

from __future__ import annotations

import contextlib
import json
import posixpath
import re
import tarfile
from dataclasses import asdict, dataclass, replace
from email.parser import HeaderParser
from pathlib import Path
from typing import IO, Any, Generic, TypeVar

from layerforge.errors import StoreError
from layerforge.fsutil import atomic_write
from layerforge.oci.compress import open_layer
from layerforge.oci.layer import Layer
from layerforge.oci.layout import Store
from layerforge.records import contents_dir

CONTENTS_FORMAT = 2  # 2: distributions carry their import names and requirements
DPKG_STATUS = "var/lib/dpkg/status"
OS_RELEASE = ("etc/os-release", "usr/lib/os-release")
BIN_DIRS = ("usr/bin", "usr/local/bin", "bin", "opt/venv/bin")
TEXT_LIMIT = 64 << 20  # a dpkg status is a few MB at most


@dataclass(frozen=True, order=True)
class DebPackage:
    """One installed Debian package, as dpkg's status lists it."""

    name: str
    version: str
    arch: str
    source: str = ""  # the source package, when it differs from the name
    source_version: str = ""  # when it differs from the version (binNMUs)


@dataclass(frozen=True, order=True)
class Distribution:
    """One installed Python distribution (from its METADATA)."""

    name: str  # as METADATA spells it
    version: str
    path: str  # its .dist-info directory in the image
    license: str = ""  # License-Expression, else a one-line License, else the classifiers'
    top_level: tuple[str, ...] = ()  # the import names its RECORD installs
    requires: tuple[str, ...] = ()  # the names of its Requires-Dist (markers not evaluated)


@dataclass(frozen=True)
class LayerContents:
    digest: str
    dpkg: tuple[DebPackage, ...] | None  # None: the layer holds no dpkg status
    dists: tuple[Distribution, ...] = ()
    removed: tuple[str, ...] = ()  # whited-out paths under site-packages
    os_release: tuple[tuple[str, str], ...] = ()
    executables: tuple[str, ...] = ()  # python* in the usual bin directories

    def to_json(self) -> dict[str, Any]:
        return {
            "format": CONTENTS_FORMAT,
            "digest": self.digest,
            "dpkg": None if self.dpkg is None else [asdict(d) for d in self.dpkg],
            "dists": [asdict(d) for d in self.dists],
            "removed": list(self.removed),
            "os_release": dict(self.os_release),
            "executables": list(self.executables),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LayerContents:
        dpkg = data["dpkg"]
        return cls(
            str(data["digest"]),
            None if dpkg is None else tuple(DebPackage(**d) for d in dpkg),
            tuple(
                Distribution(
                    **{**d, "top_level": tuple(d["top_level"]), "requires": tuple(d["requires"])}
                )
                for d in data["dists"]
            ),
            tuple(data["removed"]),
            tuple(sorted(data["os_release"].items())),
            tuple(data["executables"]),
        )


def parse_dpkg_status(text: str) -> tuple[DebPackage, ...]:
    """The installed packages of a dpkg status file (``Status: install ok installed``)."""
    out: list[DebPackage] = []
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line and not line[0].isspace() and ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if not fields.get("Package") or not fields.get("Status", "").endswith(" installed"):
            continue
        name, version = fields["Package"], fields.get("Version", "")
        source, _, rest = fields.get("Source", "").partition(" ")
        source_version = rest.strip().strip("()")
        out.append(
            DebPackage(
                name,
                version,
                fields.get("Architecture", ""),
                source if source and source != name else "",
                source_version if source_version and source_version != version else "",
            )
        )
    return tuple(sorted(out))


def license_of(meta: Any) -> str:
    """A distribution's license from its METADATA headers (PEP 639 first)."""
    expression = str(meta.get("License-Expression") or "").strip()
    if expression:
        return expression
    text = str(meta.get("License") or "").strip()
    if text and "\n" not in text and len(text) <= 80 and text.upper() != "UNKNOWN":
        return text
    classifiers = [
        str(c).rsplit("::", 1)[-1].strip()
        for c in meta.get_all("Classifier") or []
        if str(c).startswith("License ::") and str(c).count("::") >= 2
    ]
    return " AND ".join(sorted(set(classifiers)))


def _distribution(path: str, raw: bytes) -> Distribution | None:
    meta = HeaderParser().parsestr(raw.decode("utf-8", "replace"))
    name, version = str(meta.get("Name") or ""), str(meta.get("Version") or "")
    if not name or not version:
        return None
    requires = sorted(
        {re.split(r"[\s;<>=!~\[(]", str(r).strip(), maxsplit=1)[0].lower()
         for r in meta.get_all("Requires-Dist") or []} - {""}
    )  # fmt: skip
    return Distribution(
        name, version, posixpath.dirname(path), license_of(meta), (), tuple(requires)
    )


def top_level_names(record: str) -> tuple[str, ...]:
    """The import names a distribution's RECORD installs (top-level packages and modules)."""
    names: set[str] = set()
    for line in record.splitlines():
        first = line.split(",", 1)[0].strip().strip('"')
        head = first.split("/", 1)[0]
        if not head or head.startswith(".") or head.endswith((".dist-info", ".data", ".pth")):
            continue
        if "/" not in first and not first.endswith(".py") and not first.endswith(".so"):
            continue
        names.add(head.split(".", 1)[0] if "/" not in first else head)
    return tuple(sorted(n for n in names if n.isidentifier() and n != "__pycache__"))


def _os_release(raw: bytes) -> tuple[tuple[str, str], ...]:
    out: dict[str, str] = {}
    for line in raw.decode("utf-8", "replace").splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() in ("ID", "VERSION_ID", "VERSION_CODENAME", "NAME"):
            out[key.strip()] = value.strip().strip("\"'")
    return tuple(sorted(out.items()))


def _whiteout(name: str) -> str | None:
    base = posixpath.basename(name)
    if not base.startswith(".wh."):
        return None
    parent = posixpath.dirname(name)
    if base == ".wh..wh..opq":
        return parent + "/"
    return posixpath.join(parent, base[len(".wh.") :])


class _Scan:
    def __init__(self) -> None:
        self.dpkg: tuple[DebPackage, ...] | None = None
        self.dists: dict[str, Distribution] = {}
        self.records: dict[str, tuple[str, ...]] = {}
        self.removed: list[str] = []
        self.os_release: tuple[tuple[str, str], ...] = ()
        self.executables: list[str] = []

    def member(self, name: str, member: tarfile.TarInfo, read: IO[bytes] | None) -> None:
        gone = _whiteout(name)
        if gone is not None:
            if "site-packages/" in gone:
                self.removed.append(gone)
            return
        directory, base = posixpath.split(name)
        if directory in BIN_DIRS and base.startswith("python") and not member.isdir():
            self.executables.append(name)
        if read is not None:
            self.read(name, read)

    def read(self, name: str, read: IO[bytes]) -> None:
        if name == DPKG_STATUS:
            self.dpkg = parse_dpkg_status(read.read(TEXT_LIMIT).decode("utf-8", "replace"))
        elif name in OS_RELEASE:
            self.os_release = _os_release(read.read(1 << 16))
        elif _is_metadata(name):
            dist = _distribution(name, read.read(TEXT_LIMIT))
            if dist is not None:
                self.dists[dist.path] = replace(dist, top_level=self.records.get(dist.path, ()))
        elif _is_record(name):
            names = top_level_names(read.read(TEXT_LIMIT).decode("utf-8", "replace"))
            directory = posixpath.dirname(name)
            self.records[directory] = names
            if directory in self.dists:
                self.dists[directory] = replace(self.dists[directory], top_level=names)


def _is_metadata(name: str, base_name: str = "METADATA") -> bool:
    directory, base = posixpath.split(name)
    return (
        base == base_name
        and directory.endswith(".dist-info")
        and "/site-packages/" in f"/{directory}"
    )


def _is_record(name: str) -> bool:
    return _is_metadata(name, "RECORD")


def _wanted(name: str) -> bool:
    return name == DPKG_STATUS or name in OS_RELEASE or _is_metadata(name) or _is_record(name)


def read_contents(path: Path, digest: str, media_type: str | None = None) -> LayerContents:
    """One pass over a layer blob (see the module's docstring)."""
    scan = _Scan()
    try:
        with open_layer(path, media_type) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                name = posixpath.normpath(member.name.lstrip("/")).removeprefix("./")
                wanted = member.isfile() and _wanted(name)
                handle = tar.extractfile(member) if wanted else None
                scan.member(name, member, handle)
    except (OSError, tarfile.TarError, EOFError) as exc:
        raise StoreError(
            f"layer {digest} in {path.parent} cannot be read as a tar: {exc}",
            hint="the store may be damaged; rebuild the image with `layerforge build`",
        ) from exc
    return LayerContents(
        digest,
        scan.dpkg,
        tuple(sorted(scan.dists.values())),
        tuple(sorted(scan.removed)),
        scan.os_release,
        tuple(sorted(set(scan.executables))),
    )


def layer_contents(store: Store, layer: Layer) -> LayerContents:
    """The contents of a layer in the store, read once and then kept by digest."""
    digest = layer.descriptor.digest
    cache = contents_dir(store.root) / f"{digest.split(':', 1)[1]}.json"
    if cache.is_file():
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            data = json.loads(cache.read_text())
            if data.get("format") == CONTENTS_FORMAT:
                return LayerContents.from_json(data)
    if not store.has_blob(digest):
        raise StoreError(
            f"layer {digest} is missing from {store.root}",
            hint="pull it with `layerforge build` (or `layerforge verify`), or rebuild the image",
        )
    result = read_contents(store.blob_path(digest), digest, layer.descriptor.media_type)
    with contextlib.suppress(OSError):  # a read-only store still gets its SBOM
        atomic_write(cache, json.dumps(result.to_json(), separators=(",", ":")).encode())
    return result


T = TypeVar("T")


@dataclass(frozen=True)
class Located(Generic[T]):
    item: T
    layer: str  # the digest of the layer that holds it


@dataclass(frozen=True)
class ImageContents:
    debs: tuple[Located[DebPackage], ...]
    dists: tuple[Located[Distribution], ...]
    os_release: dict[str, str]
    executables: dict[str, str]  # path -> digest of the last layer that wrote it


def image_contents(store: Store, layers: tuple[Layer, ...]) -> ImageContents:
    """What the image made of ``layers`` (bottom first) holds, and in which layer."""
    debs: dict[tuple[str, str], Located[DebPackage]] = {}
    dists: dict[str, Located[Distribution]] = {}
    os_release: dict[str, str] = {}
    executables: dict[str, str] = {}
    for layer in layers:
        found = layer_contents(store, layer)
        digest = layer.descriptor.digest
        if found.dpkg is not None:
            now: dict[tuple[str, str], Located[DebPackage]] = {}
            for deb in found.dpkg:
                before = debs.get((deb.name, deb.arch))
                same = before is not None and before.item == deb
                now[(deb.name, deb.arch)] = before if same and before else Located(deb, digest)
            debs = now
        for gone in found.removed:
            for path in [p for p in dists if p == gone or p.startswith(gone.rstrip("/") + "/")]:
                del dists[path]
        for dist in found.dists:
            dists[dist.path] = Located(dist, digest)
        if found.os_release:
            os_release = dict(found.os_release)
        for path in found.executables:
            executables[path] = digest
    return ImageContents(
        tuple(sorted(debs.values(), key=lambda x: (x.item.name, x.item.arch))),
        tuple(sorted(dists.values(), key=lambda x: (x.item.name.lower(), x.item.path))),
        os_release,
        executables,
    )


def interpreter_version(contents: ImageContents, version: str) -> str:
    """The interpreter's X.Y.Z: the upstream version of Debian's ``pythonX.Y-minimal`` when
    the image's dpkg database has it, else ``version`` (X.Y) as it is."""
    minimal = f"python{version}-minimal"
    for found in contents.debs:
        if found.item.name == minimal:
            match = re.match(r"(?:\d+:)?(\d+\.\d+(?:\.\d+)?)", found.item.version)
            return match.group(1) if match else version
    return version
