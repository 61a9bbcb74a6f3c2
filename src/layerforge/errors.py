"""The exceptions layerforge raises, and the exit code each maps to.

Tree::

    LayerforgeError                 exit 1 unless a subclass says otherwise
    ├── UsageError                  exit 2: bad command-line arguments
    ├── ManifestError               exit 2: layerforge.toml is invalid (file, key, fix)
    ├── LockError                   exit 2: layerforge.lock missing, stale or unreadable
    ├── ResolveError                exit 2: uv could not resolve a node's requirements
    ├── SourceError                 exit 2: an OS source cannot be used (wrong Python, missing file)
    │   └── ArchiveError            exit 3: the Debian archive no longer serves a locked package
    ├── BuildError                  exit 1: a build step failed
    │   ├── VerifyError             exit 1: a verify statement failed inside the image
    │   ├── BudgetError             exit 1: an image is larger than its max_size
    │   ├── DiskSpaceError          exit 1: the build would not fit in the free disk space
    │   └── DiskFullError           exit 1: the disk filled up while writing (ENOSPC)
    ├── StoreError                  exit 1: the local OCI store is damaged or a blob is corrupt
    ├── SandboxError                exit 1: unpacking or running inside an image failed
    │   └── UnpackError             exit 1: a layer is hostile or damaged (escaping paths...)
    ├── ToolError                   exit 1: an external tool is missing or failed
    ├── AuditError                  exit 1: `audit --fail-on`: a vulnerability at that severity
    └── RegistryError               exit 3: talking to a registry failed
        └── ConnectionFault         exit 3: a connection broke mid-exchange (after retries)

Every message says what went wrong *and* what to do next.
"""

from __future__ import annotations


class LayerforgeError(Exception):
    """Root of every error layerforge raises on purpose."""

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class UsageError(LayerforgeError):
    exit_code = 2


class ManifestError(LayerforgeError):
    """layerforge.toml is invalid. Carries the file and the dotted key at fault."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        key: str | None = None,
        hint: str | None = None,
    ) -> None:
        prefix = ""
        if file:
            prefix = f"{file}: "
        if key:
            prefix += f"{key}: "
        super().__init__(prefix + message, hint=hint)
        self.file = file
        self.key = key


class LockError(LayerforgeError):
    exit_code = 2


class ResolveError(LayerforgeError):
    exit_code = 2


class SourceError(LayerforgeError):
    exit_code = 2


class ArchiveError(SourceError):
    """The Debian archive no longer serves (or serves other bytes for) a locked package."""

    exit_code = 3


class BuildError(LayerforgeError):
    exit_code = 1


class AuditError(LayerforgeError):
    exit_code = 1


class VerifyError(BuildError):
    exit_code = 1


class BudgetError(BuildError):
    """One or more images exceed their ``max_size``; ``breaches`` lists (node, size, limit)."""

    exit_code = 1

    def __init__(
        self, message: str, *, breaches: tuple[tuple[str, int, int], ...], hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.breaches = breaches


class DiskSpaceError(BuildError):
    """Refused before building: ``needed`` bytes would not fit in ``free`` bytes at ``path``."""

    exit_code = 1

    def __init__(
        self, message: str, *, path: str, needed: int, free: int, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.path = path
        self.needed = needed
        self.free = free


class DiskFullError(BuildError):
    """A write failed for lack of space (ENOSPC/EDQUOT); ``path``: the file, when known."""

    exit_code = 1

    def __init__(self, message: str, *, path: str | None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.path = path


class StoreError(LayerforgeError):
    exit_code = 1


class SandboxError(LayerforgeError):
    exit_code = 1


class UnpackError(SandboxError):
    """A layer cannot be unpacked safely: a member escapes the root, or the tar is damaged."""

    exit_code = 1


class ToolError(LayerforgeError):
    exit_code = 1


class RegistryError(LayerforgeError):
    exit_code = 3


class ConnectionFault(RegistryError):
    """A connection to a registry broke in the middle of an exchange (reset, broken pipe,
    closed without an answer, short body, timeout) after the registry had answered before.

    ``cause`` says what happened; ``method``/``target`` name the exchange; ``attempts`` is
    how many times it was tried. Upload and download loops catch it to resume."""

    exit_code = 3

    def __init__(
        self, message: str, *, cause: str, method: str, target: str, attempts: int,
        hint: str | None = None,
    ) -> None:  # fmt: skip
        super().__init__(message, hint=hint)
        self.cause = cause
        self.method = method
        self.target = target
        self.attempts = attempts

    def reworded(self, message: str) -> ConnectionFault:
        """The same fault told in the words of the operation that gave up on it."""
        return ConnectionFault(
            message,
            cause=self.cause,
            method=self.method,
            target=self.target,
            attempts=self.attempts,
            hint=self.hint,
        )
