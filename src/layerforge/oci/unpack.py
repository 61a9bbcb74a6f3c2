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

Unpacked images are cached by manifest digest, stacks of layers by their chain of digests
(:func:`unpack_chain`, which also keeps the stack below a small top layer), under the cache
directory; a half-done unpack never appears under its final name (temp directory, then
rename).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from layerforge import proc
from layerforge.errors import UnpackError
from layerforge.oci.compress import open_layer
from layerforge.oci.layout import Store

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
MAX_LINKS = 40  # symlinks followed while resolving one path, as Linux allows
PREFIX_RATIO = 4  # see _keep_prefix: the top layer at most a quarter of the ones below it
PREFIX_MIN_BYTES = 32_000_000  # and those large enough (compressed) to be worth caching


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

    def resolve_parent(self, parts: list[str], layer: str, member: str) -> str:
        """The host path of the directory that holds ``parts[-1]``, creating missing
        directories and following symlinks inside the root."""
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
        return os.path.join(parent, parts[-1]), "/".join(parts)


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


def _cached_lower(cache_root: Path, digests: Sequence[str]) -> tuple[int, Path | None]:
    """The longest proper prefix of ``digests`` already unpacked: (its length, its rootfs)."""
    for n in range(len(digests) - 1, 0, -1):
        candidate = cache_root / chain_id(digests[:n]) / "rootfs"
        if candidate.is_dir():
            return n, candidate
    return 0, None


def _keep_prefix(store: Store, digests: Sequence[str], start: int) -> bool:
    """Whether to unpack (and cache) ``digests[:-1]`` first, then add the top layer over a
    hardlinked copy: when the top layer is small beside the layers applied below it. The
    top layer is what changes most often (a base's shared dependency layer, after a
    requirement change): the next chain that differs only there then unpacks in a moment.
    """
    if len(digests) - start < 2:
        return False
    try:
        sizes = [store.blob_path(d).stat().st_size for d in digests[start:]]
    except OSError:  # a missing blob: applying it fails with the usual error
        return False
    below = sum(sizes[:-1])
    return below >= PREFIX_MIN_BYTES and sizes[-1] * PREFIX_RATIO <= below


def unpack_chain(store: Store, layers: Sequence[tuple[str, str]], cache_root: Path) -> Path:
    """The root filesystem of ``(digest, media type)`` layers, cached by their chain.

    The longest stack of lower layers already unpacked is reused through hardlinks (``cp
    -al``) and only the layers above it are applied; the applier never writes into an
    existing file (it unlinks and recreates), so the cached lower root filesystem stays
    intact. Callers must treat the result as read-only. When the top layer is small beside
    the large ones below it, the chain without it is unpacked (and cached) on the way.
    """
    digests = [d for d, _ in layers]
    final = cache_root / chain_id(digests)
    rootfs = final / "rootfs"
    if rootfs.is_dir():
        return rootfs
    start, lower = _cached_lower(cache_root, digests)
    if _keep_prefix(store, digests, start):
        start, lower = len(layers) - 1, unpack_chain(store, layers[:-1], cache_root)
    with _staging(final) as tmp:
        if lower is not None:
            proc.run(["cp", "-al", str(lower), str(tmp / "rootfs")])
        for index in range(start, len(layers)):
            digest, media_type = layers[index]
            label = f"layer {index} ({digest[:19]})"
            apply_layer(tmp / "rootfs", store.blob_path(digest), media_type, label)
        (tmp / "rootfs").mkdir(exist_ok=True)
        try:
            tmp.rename(final)
        except OSError:
            if not rootfs.is_dir():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    return rootfs
