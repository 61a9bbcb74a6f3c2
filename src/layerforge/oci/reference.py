"""Image references: ``[registry/]repository[:tag][@digest]`` with Docker's defaults.

A first component with a ``.`` or a ``:``, or ``localhost``, is a registry host; anything
else lives on Docker Hub (``docker.io``), where a one-component name is an official image
under ``library/``. No tag and no digest means ``latest``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from layerforge.errors import RegistryError

DEFAULT_REGISTRY = "docker.io"
# The API endpoint behind Docker's default registry name.
DEFAULT_ENDPOINT = "registry-1.docker.io"
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_HOST = re.compile(r"^(?:\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+)(?::[0-9]+)?$")


@dataclass(frozen=True)
class Reference:
    registry: str  # host[:port] as written (docker.io for Docker Hub)
    repository: str  # e.g. library/python
    tag: str | None = None
    digest: str | None = None

    @property
    def endpoint(self) -> str:
        """host[:port] to talk to."""
        return DEFAULT_ENDPOINT if self.registry == DEFAULT_REGISTRY else self.registry

    @property
    def reference(self) -> str:
        """What goes after ``/manifests/``: the digest if pinned, else the tag."""
        return self.digest or self.tag or "latest"

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.registry, self.repository, self.tag, digest)

    def with_tag(self, tag: str) -> Reference:
        return Reference(self.registry, self.repository, tag, None)

    def __str__(self) -> str:
        out = f"{self.registry}/{self.repository}"
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def _bad(text: str, why: str) -> RegistryError:
    return RegistryError(
        f"bad image reference {text!r}: {why}",
        hint="write [REGISTRY/]REPOSITORY[:TAG][@sha256:DIGEST], e.g. 'python:3.12-slim' or "
        "'registry.example:5000/team/base@sha256:...'",
    )


def is_host(component: str) -> bool:
    return component == "localhost" or "." in component or ":" in component


def _split_registry(text: str, rest: str) -> tuple[str, str]:
    first, slash, remainder = rest.partition("/")
    if slash and is_host(first):
        if not _HOST.match(first):
            raise _bad(text, f"{first!r} is not a registry host")
        return first, remainder
    return DEFAULT_REGISTRY, rest


def _split_tag(text: str, rest: str) -> tuple[str, str | None]:
    if ":" not in rest.rsplit("/", 1)[-1]:
        return rest, None
    name, _, tag = rest.rpartition(":")
    if not _TAG.match(tag):
        raise _bad(text, f"{tag!r} is not a valid tag")
    return name, tag


def parse(text: str) -> Reference:
    """Parse a reference; raises RegistryError (exit 3) naming what is wrong."""
    rest, _, digest = text.strip().partition("@")
    if digest and not _DIGEST.match(digest):
        raise _bad(text, f"{digest!r} is not a sha256 digest")
    registry, rest = _split_registry(text, rest)
    name, tag = _split_tag(text, rest)
    if not name:
        raise _bad(text, "no repository name")
    for part in name.split("/"):
        if not _COMPONENT.match(part):
            raise _bad(text, f"{part!r} is not a valid repository component (lowercase only)")
    if registry == DEFAULT_REGISTRY and "/" not in name:
        name = f"library/{name}"
    if tag is None and not digest:
        tag = "latest"
    return Reference(registry, name, tag, digest or None)


def is_loopback(host: str) -> bool:
    """``host[:port]`` names this machine (plain HTTP is allowed there)."""
    name = host
    if name.startswith("["):
        name = name[1:].split("]", 1)[0]
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def split_namespace(registry: str) -> tuple[str, str]:
    """``project.registry`` ('host[:port][/path]') -> (host, path prefix without slashes)."""
    text = registry.strip().removeprefix("https://").removeprefix("http://").strip("/")
    first, _, rest = text.partition("/")
    if not is_host(first):
        return DEFAULT_REGISTRY, text
    return first, rest


def namespace_problem(registry: str) -> str | None:
    """What is wrong with ``project.registry`` ('host[:port][/path]'), or None."""
    host, namespace = split_namespace(registry)
    if host != DEFAULT_REGISTRY and not _HOST.match(host):
        return f"{host!r} is not a registry host"
    if host == DEFAULT_REGISTRY and not namespace:
        return "it names no host and no namespace"
    for part in namespace.split("/") if namespace else ():
        if not _COMPONENT.match(part):
            return f"{part!r} is not a valid repository path component (lowercase only)"
    return None
