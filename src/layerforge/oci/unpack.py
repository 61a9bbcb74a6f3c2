"""Unpack image layers into a root filesystem, safely.

Layers are applied in order. Whiteouts (``.wh.NAME``) delete what a lower layer put at
``NAME``; an opaque marker (``.wh..wh..opq``) empties a directory of everything lower
layers put there. Every path is resolved *inside* the root, the way the kernel resolves it
in a chroot: absolute symlinks (common in Debian: ``/etc/alternatives/...``) restart at the
root, and the final component of a member is never followed (a regular file replaces a
symlink; it never writes through it).

Refused, with an :class:`~layerforge.errors.UnpackError` naming the layer and the member:
absolute member names, ``..`` components, a parent directory reached through a symlink that
climbs out of the root, hardlinks whose target is absolute, contains ``..`` or is not a
regular file inside the root. Device nodes and fifos are skipped (the sandbox mounts
``/dev``). Ownership is kept when running as root; modes, mtimes and hardlinks always.

Unpacked images are cached by manifest digest; a stack of layers is a link farm of trees
unpacked once per layer (:func:`unpack_layer_tree`, :func:`assemble_root`,
:func:`unpack_chain`), under the cache directory; a half-done unpack never appears under its
final name (temp directory, then rename).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layerforge.errors import UnpackError
from layerforge.fsutil import atomic_write
from layerforge.oci.compress import open_layer
from layerforge.oci.layout import Store

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
MAX_LINKS = 40  # symlinks followed while resolving one path, as Linux allows


def _parts(name: str, layer: str, what: str = "member") -> list[str]:
    """The components of a member name, refusing absolute names and ``..``."""
    if name.startswith("/"):
        raise UnpackError(f"{layer}: {what} {name!r} is an absolute path; refusing the layer")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnpackError(f"{layer}: {what} {name!r} contains '..'; refusing the layer")
    return parts


class Rootfs:
    """A directory being filled layer by layer, with chroot-style path resolution."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._real = os.path.realpath(root)
        self._same_uid = os.geteuid() == 0

    def resolve_parent(
        self, parts: list[str], layer: str, member: str, *, create: bool = True
    ) -> str | None:
        """The host path of the directory that holds ``parts[-1]``, creating missing
        directories (or, without ``create``, None if one is missing) and following symlinks
        inside the root."""
        current: list[str] = []
        todo = list(parts[:-1])
        links = 0
        while todo:
            part = todo.pop(0)
            if part == "..":
                if not current:
                    raise UnpackError(
                        f"{layer}: member {member!r} reaches above the root through a symlink"
                    )
                current.pop()
                continue
            host = os.path.join(self._real, *current, part)
            try:
                st = os.lstat(host)
            except FileNotFoundError:
                if not create:
                    return None
                os.mkdir(host, 0o755)
                current.append(part)
                continue
            if stat.S_ISLNK(st.st_mode):
                links += 1
                if links > MAX_LINKS:
                    raise UnpackError(f"{layer}: member {member!r}: too many levels of symlinks")
                target = os.readlink(host)
                if target.startswith("/"):
                    current = []
                todo = [p for p in target.split("/") if p not in ("", ".")] + todo
                continue
            if not stat.S_ISDIR(st.st_mode):
                raise UnpackError(
                    f"{layer}: member {member!r} lies below {'/'.join([*current, part])!r}, "
                    "which is not a directory"
                )
            current.append(part)
        return os.path.join(self._real, *current)

    def host_path(self, name: str, layer: str, what: str = "member") -> tuple[str, str]:
        """(host path, member name) for a member, the last component not followed."""
        parts = _parts(name, layer, what)
        if not parts:
            return self._real, ""
        parent = self.resolve_parent(parts, layer, name)
        assert parent is not None
        return os.path.join(parent, parts[-1]), "/".join(parts)

    def lookup(self, name: str, layer: str, what: str = "member") -> str | None:
        """The host path of ``name`` (the last component not followed), or None when a
        directory on the way is missing: nothing is created."""
        parts = _parts(name, layer, what)
        if not parts:
            return self._real
        parent = self.resolve_parent(parts, layer, name, create=False)
        return None if parent is None else os.path.join(parent, parts[-1])


def _remove(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


class _LayerApplier:
    def __init__(self, fs: Rootfs, label: str) -> None:
        self.fs = fs
        self.label = label
        self.created: set[str] = set()  # host paths this layer wrote (opaque dirs keep them)
        # directories whose mode is set at the end, with the (st_dev, st_ino) they had
        self.dir_modes: list[tuple[str, tarfile.TarInfo, tuple[int, int]]] = []

    def apply(self, tar: tarfile.TarFile) -> None:
        for info in tar:
            self._member(tar, info)
        for host, info, ident in reversed(self.dir_modes):  # deepest first, after the content
            self._finish_dir(host, info, ident)

    def _member(self, tar: tarfile.TarFile, info: tarfile.TarInfo) -> None:
        base = info.name.rstrip("/").rsplit("/", 1)[-1]
        if base == OPAQUE:
            self._opaque(info.name)
            return
        if base.startswith(WHITEOUT):
            dirname = info.name.rstrip("/")[: -len(base)]
            host, _ = self.fs.host_path(dirname + base[len(WHITEOUT) :], self.label)
            _remove(host)
            return
        host, _ = self.fs.host_path(info.name, self.label)
        if host == self.fs._real:
            return  # the root directory itself: nothing to create
        if info.isdir():
            self._dir(host, info)
        elif info.isreg():
            self._file(tar, host, info)
        elif info.issym():
            _replace(host)
            os.symlink(info.linkname, host)
            self._finish(host, info)
        elif info.islnk():
            self._hardlink(host, info)
        else:
            return  # devices, fifos: the sandbox provides /dev
        self.created.add(host)

    def _opaque(self, name: str) -> None:
        dirname = name.rstrip("/")[: -len(OPAQUE)].rstrip("/")
        host, _ = self.fs.host_path(dirname, self.label)
        if not os.path.isdir(host) or os.path.islink(host):
            return
        for child in os.listdir(host):
            path = os.path.join(host, child)
            if path not in self.created:
                _remove(path)

    def _dir(self, host: str, info: tarfile.TarInfo) -> None:
        try:
            st = os.lstat(host)
        except FileNotFoundError:
            os.mkdir(host, 0o755)
        else:
            if not stat.S_ISDIR(st.st_mode):
                _remove(host)
                os.mkdir(host, 0o755)
        st = os.lstat(host)
        self.dir_modes.append((host, info, (st.st_dev, st.st_ino)))

    def _finish_dir(self, host: str, info: tarfile.TarInfo, ident: tuple[int, int]) -> None:
        """The owner, mode and mtime of a directory, once its content is in. A later member
        of the layer may have replaced it, or one of its parents, by a symlink (to a host
        path): the directory is opened without following its last component and changed
        through that descriptor only if it is still the one this layer made."""
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(host, flags)
        except OSError:
            return  # replaced by a file or a symlink, or removed: nothing to set
        try:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != ident:
                return  # reached through a parent replaced by a symlink: not ours
            if self.fs._same_uid:
                with contextlib.suppress(OSError):
                    os.fchown(fd, info.uid, info.gid)
            os.fchmod(fd, info.mode & 0o7777)
            with contextlib.suppress(OSError):
                os.utime(fd, (info.mtime, info.mtime))
        finally:
            os.close(fd)

    def _file(self, tar: tarfile.TarFile, host: str, info: tarfile.TarInfo) -> None:
        _replace(host)
        src = tar.extractfile(info)
        assert src is not None
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(host, flags, 0o600)
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
        self._finish(host, info)

    def _hardlink(self, host: str, info: tarfile.TarInfo) -> None:
        target, _ = self.fs.host_path(info.linkname, self.label, "hardlink target")
        try:
            st = os.lstat(target)
        except FileNotFoundError:
            raise UnpackError(
                f"{self.label}: hardlink {info.name!r} points at {info.linkname!r}, "
                "which does not exist in the image"
            ) from None
        if not stat.S_ISREG(st.st_mode):
            raise UnpackError(
                f"{self.label}: hardlink {info.name!r} points at {info.linkname!r}, "
                "which is not a regular file"
            )
        _replace(host)
        os.link(target, host, follow_symlinks=False)

    def _finish(self, host: str, info: tarfile.TarInfo) -> None:
        if self.fs._same_uid:
            with contextlib.suppress(OSError):
                os.lchown(host, info.uid, info.gid)
        if not info.issym():
            os.chmod(host, info.mode & 0o7777)
        with contextlib.suppress(OSError):
            os.utime(host, (info.mtime, info.mtime), follow_symlinks=False)


def _replace(host: str) -> None:
    """Make room for a non-directory at ``host`` (never following a symlink there)."""
    _remove(host)


def apply_layer(root: Path, path: Path, media_type: str, label: str | None = None) -> None:
    """Apply one layer blob (tar, tar+gzip or tar+zstd) onto ``root``."""
    name = label or path.name
    root.mkdir(parents=True, exist_ok=True)
    fs = Rootfs(root)
    try:
        with (
            open_layer(path, media_type) as stream,
            tarfile.open(fileobj=stream, mode="r|") as tar,
        ):
            _LayerApplier(fs, name).apply(tar)
    except tarfile.TarError as exc:
        raise UnpackError(f"{name}: not a valid tar layer: {exc}") from exc


def unpack_layers(layers: list[tuple[Path, str]], target: Path) -> None:
    """Apply ``(blob path, media type)`` layers in order onto ``target`` (created)."""
    target.mkdir(parents=True, exist_ok=True)
    for path, media_type in layers:
        apply_layer(target, path, media_type)


@contextlib.contextmanager
def _staging(final: Path) -> Iterator[Path]:
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=final.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def unpack_image(store: Store, manifest_digest: str, cache_root: Path) -> Path:
    """The root filesystem of an image in the store, unpacked once per manifest digest."""
    final = cache_root / manifest_digest.split(":", 1)[1][:32]
    rootfs = final / "rootfs"
    if rootfs.is_dir():
        return rootfs
    manifest = store.read_json(manifest_digest)
    with _staging(final) as tmp:
        for index, layer in enumerate(manifest.get("layers", [])):
            digest = str(layer["digest"])
            label = f"layer {index} ({digest[:19]})"
            apply_layer(tmp / "rootfs", store.blob_path(digest), str(layer["mediaType"]), label)
        (tmp / "rootfs").mkdir(exist_ok=True)
        try:
            tmp.rename(final)
        except OSError:
            if not rootfs.is_dir():  # not a concurrent unpack of the same image
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    return rootfs


def chain_id(digests: Sequence[str]) -> str:
    """The identity of a stack of layers (like OCI's ChainID, over compressed digests)."""
    return hashlib.sha256("\n".join(digests).encode()).hexdigest()[:32]


# -- one tree per layer, roots assembled from them (link farms) -----------------------------
#
# A layer is unpacked once, by digest, into ``TREES/<hex32>/tree`` (its whiteouts and opaque
# markers are recorded in ``meta.json`` beside it, not applied). A root filesystem for a
# chain of layers is then a *link farm* under ``ROOTS/<chain id>/rootfs``: the farm's own
# directories, its symlinks made again, every regular file a hardlink to the file of the
# layer tree that holds it. N images sharing a base cost the base's files once, and a chain
# that changes in the middle (a mid-tier requirement) re-links the layers above the change
# instead of extracting them again.
#
# The files of a farm ARE the files of the layer trees (and of every other farm that uses
# them). Nothing may write into them: verify and bytecode mount a farm read-only (``--ro-bind``
# over the whole root: no write, chmod, chown or utime reaches an inode), and a system step
# runs in a full copy of the farm (``cp -a``: new inodes). Assembling a farm only creates,
# links and unlinks names in the farm's own directories, and sets the mode, owner and times of
# those directories: never of a linked file.

TREE = "tree"
ROOT = "rootfs"
META = "meta.json"
USED = ".used"  # touched (mtime) on every use: the least recently used entries go first
# what an entry takes besides its content: its directory, tree/ or rootfs/, meta.json and
# .used, a block each (counted in ``bytes``, so that the cap holds for what ``du`` sees)
ENTRY_OVERHEAD = 4 * 4096


@dataclass(frozen=True)
class LayerTree:
    """One layer unpacked on its own, and what it asks of the layers below it."""

    digest: str
    path: Path  # the cache entry: ``tree/`` and ``meta.json`` inside
    remove: tuple[str, ...] = ()  # whiteouts: paths removed from the layers below
    opaque: tuple[str, ...] = ()  # directories emptied of what the layers below put there
    implicit: tuple[str, ...] = ()  # directories the tar did not list (made on the way)
    links: tuple[tuple[str, str], ...] = ()  # (name, target): hardlinks to a lower layer
    bytes: int = 0  # disk used by the tree
    files: int = 0
    dirs: int = 0

    @property
    def tree(self) -> Path:
        return self.path / TREE

    def to_json(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "remove": list(self.remove),
            "opaque": list(self.opaque),
            "implicit": list(self.implicit),
            "links": [list(x) for x in self.links],
            "bytes": self.bytes,
            "files": self.files,
            "dirs": self.dirs,
        }

    @classmethod
    def load(cls, path: Path) -> LayerTree:
        doc = json.loads((path / META).read_text())
        return cls(
            str(doc["digest"]),
            path,
            tuple(doc.get("remove", ())),
            tuple(doc.get("opaque", ())),
            tuple(doc.get("implicit", ())),
            tuple((str(a), str(b)) for a, b in doc.get("links", ())),
            int(doc.get("bytes", 0)),
            int(doc.get("files", 0)),
            int(doc.get("dirs", 0)),
        )


def touch(entry: Path) -> None:
    """Mark a tree or root as used now (for the least-recently-used eviction)."""
    with contextlib.suppress(OSError):
        (entry / USED).touch()


class _TreeApplier(_LayerApplier):
    """Unpack one layer alone: whiteouts and opaque markers are recorded, not applied (they
    concern the layers below), and a hardlink to a file of a lower layer is kept for the
    farm to make."""

    def __init__(self, fs: Rootfs, label: str) -> None:
        super().__init__(fs, label)
        self.remove: set[str] = set()
        self.opaque: set[str] = set()
        self.links: dict[str, tuple[str, str]] = {}  # host path -> (name, target)

    def _member(self, tar: tarfile.TarFile, info: tarfile.TarInfo) -> None:
        base = info.name.rstrip("/").rsplit("/", 1)[-1]
        if base == OPAQUE:
            dirname = info.name.rstrip("/")[: -len(OPAQUE)].rstrip("/")
            self.opaque.add("/".join(_parts(dirname, self.label)))
            return
        if base.startswith(WHITEOUT):
            dirname = info.name.rstrip("/")[: -len(base)]
            name = "/".join(_parts(dirname + base[len(WHITEOUT) :], self.label))
            if name:
                self.remove.add(name)
            return
        if self.links:  # a later member at the same place wins over a link kept for later
            host, _ = self.fs.host_path(info.name, self.label)
            self.links.pop(host, None)
        super()._member(tar, info)

    def _hardlink(self, host: str, info: tarfile.TarInfo) -> None:
        target, _ = self.fs.host_path(info.linkname, self.label, "hardlink target")
        if os.path.lexists(target):
            super()._hardlink(host, info)
            return
        name = "/".join(_parts(info.name, self.label))
        link = "/".join(_parts(info.linkname, self.label, "hardlink target"))
        _replace(host)
        self.links[host] = (name, link)


def _tree_stats(tree: Path, explicit: set[str]) -> tuple[int, int, int, list[str]]:
    """(bytes on disk, files, directories, directories the layer did not list)."""
    used, files, dirs = ENTRY_OVERHEAD, 0, 0
    seen: set[int] = set()
    implicit: list[str] = []
    real = os.path.realpath(tree)
    for top, dirnames, filenames in os.walk(real):
        for name in dirnames:
            path = os.path.join(top, name)
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode):
                dirs += 1
                used += st.st_blocks * 512
                if path not in explicit:
                    implicit.append(os.path.relpath(path, real))
            else:
                files += 1  # a symlink to a directory
        for name in filenames:
            st = os.lstat(os.path.join(top, name))
            files += 1
            if st.st_ino not in seen:
                seen.add(st.st_ino)
                used += st.st_blocks * 512
    return used, files, dirs, sorted(implicit)


def unpack_layer_tree(store: Store, digest: str, media_type: str, cache_root: Path) -> LayerTree:
    """One layer unpacked alone, once per digest, under ``cache_root/<hex32>`` (see above).
    Hostile layers are refused exactly as by :func:`apply_layer`."""
    final = cache_root / digest.split(":", 1)[1][:32]
    if (final / META).is_file():
        touch(final)
        return LayerTree.load(final)
    label = f"layer {digest[:19]}"
    with _staging(final) as tmp:
        tree = tmp / TREE
        tree.mkdir()
        fs = Rootfs(tree)
        applier = _TreeApplier(fs, label)
        try:
            with (
                open_layer(store.blob_path(digest), media_type) as stream,
                tarfile.open(fileobj=stream, mode="r|") as tar,
            ):
                applier.apply(tar)
        except tarfile.TarError as exc:
            raise UnpackError(f"{label}: not a valid tar layer: {exc}") from exc
        explicit = {host for host, _, _ in applier.dir_modes}
        used, files, dirs, implicit = _tree_stats(tree, explicit)
        result = LayerTree(
            digest,
            final,
            tuple(sorted(applier.remove)),
            tuple(sorted(applier.opaque)),
            tuple(implicit),
            tuple(sorted(applier.links.values())),
            used,
            files,
            dirs,
        )
        atomic_write(tmp / META, json.dumps(result.to_json(), indent=1).encode())
        (tmp / USED).touch()
        try:
            tmp.rename(final)
        except OSError:
            if not (final / META).is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    return result


class _Farm:
    """Link the trees of layers, in order, into one root filesystem (see above)."""

    def __init__(self, root: Path) -> None:
        self.fs = Rootfs(root)
        self.real = self.fs._real
        # host path of a directory -> (its stat in the top-most tree that lists it, identity)
        self.dirs: dict[str, tuple[os.stat_result, tuple[int, int]]] = {}

    def add(self, layer: LayerTree) -> None:
        label = f"layer {layer.digest[:19]}"
        for name in layer.remove:
            host = self.fs.lookup(name, label)
            if host is not None and host != self.real:
                _remove(host)
        for name in layer.opaque:
            host = self.fs.lookup(name, label)
            if host is not None and os.path.isdir(host) and not os.path.islink(host):
                for child in os.listdir(host):
                    _remove(os.path.join(host, child))
        self._walk(str(layer.tree), "", self.real, frozenset(layer.implicit), label)
        for name, target in layer.links:
            self._link_lower(name, target, label)

    def _walk(
        self, directory: str, rel: str, host_dir: str, implicit: frozenset[str], label: str
    ) -> None:
        """Link the entries of the tree's ``directory`` (``rel`` in the image) into
        ``host_dir``, the farm's directory for it (resolved once per directory, inside the
        root: its entries are made by name in it, never through a symlink)."""
        with os.scandir(directory) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            name = f"{rel}/{entry.name}" if rel else entry.name
            host = os.path.join(host_dir, entry.name)
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                if name in implicit:  # not listed by the layer: as a lower layer made it
                    parent = self.fs.resolve_parent([*name.split("/"), "-"], label, name)
                    assert parent is not None
                    host = parent
                else:
                    self._dir(host, st)
                self._walk(entry.path, name, host, implicit, label)
                continue
            _replace(host)
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(entry.path), host)
                if self.fs._same_uid:
                    with contextlib.suppress(OSError):
                        os.lchown(host, st.st_uid, st.st_gid)
                with contextlib.suppress(OSError):
                    os.utime(host, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
            elif stat.S_ISREG(st.st_mode):
                _link_or_copy(entry.path, host, st)
            # nothing else is ever in a tree (devices and fifos are not unpacked)

    def _dir(self, host: str, st: os.stat_result) -> None:
        try:
            here = os.lstat(host)
        except FileNotFoundError:
            os.mkdir(host, 0o755)
        else:
            if not stat.S_ISDIR(here.st_mode):
                _remove(host)  # a file or a symlink (never followed) of a lower layer
                os.mkdir(host, 0o755)
        here = os.lstat(host)
        self.dirs[host] = (st, (here.st_dev, here.st_ino))

    def _link_lower(self, name: str, target: str, label: str) -> None:
        host, _ = self.fs.host_path(name, label)
        source, _ = self.fs.host_path(target, label, "hardlink target")
        try:
            st = os.lstat(source)
        except FileNotFoundError:
            raise UnpackError(
                f"{label}: hardlink {name!r} points at {target!r}, which does not exist in "
                "the image"
            ) from None
        if not stat.S_ISREG(st.st_mode):
            raise UnpackError(
                f"{label}: hardlink {name!r} points at {target!r}, which is not a regular file"
            )
        _replace(host)
        _link_or_copy(source, host, st)

    def finish(self) -> None:
        """The mode, owner and times of every directory, deepest first, from the top-most
        layer that lists it; through a descriptor opened without following a symlink, and
        only if it is still the directory made here (as :meth:`_LayerApplier._finish_dir`)."""
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
        for host in sorted(self.dirs, key=lambda h: h.count("/"), reverse=True):
            st, ident = self.dirs[host]
            try:
                fd = os.open(host, flags)
            except OSError:
                continue
            try:
                here = os.fstat(fd)
                if (here.st_dev, here.st_ino) != ident:
                    continue
                if self.fs._same_uid:
                    with contextlib.suppress(OSError):
                        os.fchown(fd, st.st_uid, st.st_gid)
                os.fchmod(fd, stat.S_IMODE(st.st_mode))
                with contextlib.suppress(OSError):
                    os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
            finally:
                os.close(fd)


def _link_or_copy(source: str, host: str, st: os.stat_result) -> None:
    """A hardlink to ``source`` at ``host``; a copy (mode, owner, times kept) when the cache
    spans filesystems or the file has the most links its filesystem allows."""
    try:
        os.link(source, host, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EMLINK):
            raise
    else:
        return
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    out_flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    with (
        os.fdopen(os.open(source, flags), "rb") as src,
        os.fdopen(os.open(host, out_flags, 0o600), "wb") as out,
    ):
        shutil.copyfileobj(src, out, 1 << 20)
    if os.geteuid() == 0:
        os.chown(host, st.st_uid, st.st_gid, follow_symlinks=False)
    os.chmod(host, stat.S_IMODE(st.st_mode))
    os.utime(host, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def assemble_root(trees: Sequence[LayerTree], target: Path) -> Path:
    """A root filesystem at ``target`` (created) equal to applying the layers in order: a
    link farm of their trees (see above). Treat it as read-only."""
    target.mkdir(parents=True, exist_ok=True)
    farm = _Farm(target)
    for layer in trees:
        farm.add(layer)
    farm.finish()
    return target


def unpack_chain(
    store: Store, layers: Sequence[tuple[str, str]], trees_root: Path, roots_root: Path
) -> Path:
    """The root filesystem of ``(digest, media type)`` layers: each layer unpacked once (by
    digest, under ``trees_root``), the chain a link farm of them (by chain id, under
    ``roots_root``). Callers must treat the result as read-only (mount it so)."""
    digests = [d for d, _ in layers]
    final = roots_root / chain_id(digests)
    rootfs = final / ROOT
    if (final / META).is_file():
        touch(final)
        for digest in digests:  # the trees it links are in use too
            touch(trees_root / digest.split(":", 1)[1][:32])
        return rootfs
    trees = [unpack_layer_tree(store, d, m, trees_root) for d, m in layers]
    with _staging(final) as tmp:
        assemble_root(trees, tmp / ROOT)
        used = ENTRY_OVERHEAD + sum(st.st_blocks * 512 for st in _dir_stats(tmp / ROOT))
        doc = {"layers": [d.split(":", 1)[1][:32] for d in digests], "bytes": used}
        atomic_write(tmp / META, json.dumps(doc, indent=1).encode())
        (tmp / USED).touch()
        try:
            tmp.rename(final)
        except OSError:
            if not (final / META).is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    return rootfs


def _dir_stats(root: Path) -> Iterator[os.stat_result]:
    """The farm's own disk use: its directories and symlinks (its files are the trees')."""
    for top, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            st = os.lstat(os.path.join(top, name))
            if not stat.S_ISREG(st.st_mode):
                yield st
