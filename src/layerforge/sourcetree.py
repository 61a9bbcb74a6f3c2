"""A service's source tree: which files go into its application layer, and their digest.

Honours ``.dockerignore`` (patterns relative to the source root, ``**``, ``!`` negation,
last match wins). ``__pycache__``, ``*.pyc``, ``.git`` and the ignore file itself never ship.
Nor does layerforge's own state, whatever ``.dockerignore`` says: any directory named
``.layerforge`` (the default store) and the store and cache directories in use when they lie
inside the tree (``source = "."`` would otherwise copy the store into the image, growing it
and changing its key with every build).
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from layerforge.errors import ManifestError
from layerforge.fsutil import digest_json, sha256_file

ALWAYS_IGNORED = ("**/__pycache__", "**/*.pyc", "**/*.pyo", ".git", ".dockerignore", "**/.DS_Store")
STORE_DIR = ".layerforge"  # the default store, in the project directory: never a source file


@dataclass(frozen=True)
class SourceFile:
    path: str  # relative POSIX path
    mode: int
    size: int
    sha256: str  # of the content ("" for a symlink)
    link: str | None = None  # a symlink's target (the link ships as a link)

    @property
    def fingerprint(self) -> str:
        """What identifies the file's content in the tree's digest (and so in content keys):
        its sha256, or ``link:TARGET`` for a symlink. Keys depend on this spelling."""
        return f"link:{self.link}" if self.link is not None else self.sha256


@dataclass(frozen=True)
class SourceTree:
    root: Path
    files: tuple[SourceFile, ...]

    @property
    def digest(self) -> str:
        doc = [[f.path, f.mode, f.fingerprint] for f in self.files]
        return digest_json(doc)  # a list: sorting keys changes nothing

    def file_map(self) -> dict[str, str]:
        return {f.path: f"{f.mode:o}:{f.fingerprint}" for f in self.files}

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


@dataclass(frozen=True)
class IgnoreRules:
    rules: tuple[tuple[bool, str], ...]  # (negated, pattern)

    @classmethod
    def load(cls, root: Path) -> IgnoreRules:
        rules = [(False, p) for p in ALWAYS_IGNORED]
        path = root / ".dockerignore"
        if path.is_file():
            try:
                text = path.read_bytes().decode()
            except UnicodeDecodeError as exc:
                raise ManifestError(
                    f"not UTF-8 text (byte {exc.start} cannot be decoded)",
                    file=str(path),
                    hint="save it as UTF-8",
                ) from None
            for raw in text.splitlines():
                line = raw.strip()
                if not line or line.startswith("#"):
                    continue
                negated = line.startswith("!")
                pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
                rules.append((negated, pattern))
        return cls(tuple(rules))

    def ignored(self, rel: str) -> bool:
        """Last matching rule wins; a pattern matching a parent directory matches below it."""
        result = False
        for negated, pattern in self.rules:
            if _matches(pattern, rel):
                result = not negated
        return result


def _matches(pattern: str, rel: str) -> bool:
    parts = rel.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for candidate in candidates:
        if fnmatch.fnmatchcase(candidate, pattern):
            return True
        if pattern.startswith("**/") and (
            fnmatch.fnmatchcase(candidate, pattern[3:])
            or fnmatch.fnmatchcase(candidate.rsplit("/", 1)[-1], pattern[3:])
        ):
            return True
    return False


def scan(root: Path, exclude: Iterable[Path] = ()) -> SourceTree:
    """Walk ``root``, applying the ignore rules; directories named ``.layerforge`` and those
    in ``exclude`` (the store and the cache directory) are left out, with all they hold.

    Symlinks are never followed: a link (to a file or to a directory, inside the tree or not)
    ships as a link, as Docker's COPY keeps the links inside its build context, so that a link
    pointing outside the project never pulls host files into a layer.
    """
    rules = IgnoreRules.load(root)
    real_root = os.path.realpath(root)  # walked without following links: real paths below
    skipped = {os.path.realpath(p) for p in exclude}
    files: list[SourceFile] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/")
        real_dir = os.path.join(real_root, rel_dir)
        dirnames[:] = sorted(
            d
            for d in dirnames
            if d != STORE_DIR
            and os.path.join(real_dir, d) not in skipped
            and not rules.ignored(f"{rel_dir}/{d}".lstrip("/"))
        )
        links = [d for d in dirnames if (Path(dirpath) / d).is_symlink()]
        dirnames[:] = [d for d in dirnames if d not in links]  # os.walk would not descend anyway
        for name in sorted([*filenames, *links]):
            rel = f"{rel_dir}/{name}".lstrip("/")
            if rules.ignored(rel):
                continue
            full = Path(dirpath) / name
            st = full.lstat()
            if stat.S_ISLNK(st.st_mode):
                target = os.readlink(full)
                files.append(SourceFile(rel, 0o777, 0, "", link=target))
            elif stat.S_ISREG(st.st_mode):
                mode = 0o755 if st.st_mode & 0o111 else 0o644
                files.append(SourceFile(rel, mode, st.st_size, sha256_file(full)))
    files.sort(key=lambda f: f.path)
    return SourceTree(root, tuple(files))


def copy_tree(tree: SourceTree, target: Path) -> None:
    """Lay the files of ``tree`` (and nothing else) out under the new directory ``target``:
    hardlinks where the filesystem allows, copies elsewhere; links stay links."""
    target.mkdir(mode=0o755)
    for f in tree.files:
        dest = target / f.path
        dest.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        source = tree.root / f.path
        if f.link is not None:
            os.symlink(os.readlink(source), dest)
            continue
        try:
            os.link(source, dest)
        except OSError:
            shutil.copy2(source, dest)
