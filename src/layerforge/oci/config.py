"""Registry settings that belong to no project: where credentials live, which hosts may use
plain HTTP, where private CAs are; clients built from them, and ``login``.

Nothing here reads the process environment: ``RegistryConfig.from_env`` takes a mapping
(``DOCKER_CONFIG``, ``LAYERFORGE_INSECURE_REGISTRIES``, ``LAYERFORGE_CERTS_DIR``, ``HOME``,
``XDG_CONFIG_HOME``, the proxy variables of :mod:`layerforge.oci.proxy`,
``LAYERFORGE_UPLOAD_CHUNK``), which :func:`layerforge.api.registry_config` passes from
``os.environ`` for the CLI. A library caller builds its own :class:`RegistryConfig`.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from layerforge.errors import RegistryError, UsageError
from layerforge.oci.auth import Credential, default_config_path, lookup, read_config, save_login
from layerforge.oci.proxy import ProxyConfig
from layerforge.oci.push import MIN_CHUNK
from layerforge.oci.reference import DEFAULT_ENDPOINT, DEFAULT_REGISTRY, split_namespace
from layerforge.oci.registry import Client
from layerforge.sizes import parse_size

INSECURE_ENV = "LAYERFORGE_INSECURE_REGISTRIES"
CERTS_ENV = "LAYERFORGE_CERTS_DIR"
CHUNK_ENV = "LAYERFORGE_UPLOAD_CHUNK"


def upload_chunk(env: Mapping[str, str]) -> int | None:
    """``LAYERFORGE_UPLOAD_CHUNK`` (a size, at least 1 MiB), or None: one PATCH per blob."""
    value = env.get(CHUNK_ENV, "").strip()
    if not value:
        return None
    try:
        size = parse_size(value)
    except ValueError as exc:
        raise UsageError(f"{CHUNK_ENV}={value!r}: {exc}") from None
    if size < MIN_CHUNK:
        raise UsageError(
            f"{CHUNK_ENV}={value!r} is below the smallest chunk, 1MiB",
            hint="use a size such as 16MiB (some registries want at least 5MiB per chunk)",
        )
    return size


def default_cert_dirs(env: Mapping[str, str]) -> tuple[Path, ...]:
    """Where ``<host:port>/*.crt`` CA files are looked for, first match wins (containers'
    order, after ``$LAYERFORGE_CERTS_DIR``)."""
    home = Path(env.get("HOME") or Path.home())
    config_home = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
    own = (Path(env[CERTS_ENV]),) if env.get(CERTS_ENV) else ()
    return (
        *own,
        config_home / "containers" / "certs.d",
        Path("/etc/containers/certs.d"),
        Path("/etc/docker/certs.d"),
    )


def tls_context(cert_dirs: tuple[Path, ...], host: str) -> ssl.SSLContext | None:
    """The system's CAs plus the ``*.crt`` files of the first ``DIR/<host>/`` that exists;
    None when no directory has an entry for ``host``."""
    entry = next((d / host for d in cert_dirs if (d / host).is_dir()), None)
    if entry is None:
        return None
    context = ssl.create_default_context()
    for ca in sorted(entry.glob("*.crt")):
        try:
            context.load_verify_locations(cafile=str(ca))
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(
                f"{ca}: not a PEM CA certificate ({exc})",
                hint=f"put the PEM certificate of the CA that signed {host}'s certificate there",
            ) from None
    return context


@dataclass(frozen=True)
class RegistryConfig:
    """Where credentials live, which hosts may use plain HTTP, where private CAs are."""

    docker_config: Path
    insecure: tuple[str, ...] = ()
    cert_dirs: tuple[Path, ...] = ()
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    upload_chunk: int | None = None  # bytes per upload PATCH (None: a blob in one)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RegistryConfig:
        insecure = tuple(h.strip() for h in env.get(INSECURE_ENV, "").split(",") if h.strip())
        return cls(
            default_config_path(env),
            insecure,
            default_cert_dirs(env),
            ProxyConfig.from_env(env),
            upload_chunk(env),
        )

    def client(self, registry: str, credential: Credential | None = None) -> Client:
        """A client for ``registry`` with its credential (from config.json unless given)."""
        endpoint = DEFAULT_ENDPOINT if registry == DEFAULT_REGISTRY else registry
        if credential is None:
            credential = lookup(read_config(self.docker_config), registry)
        insecure = registry in self.insecure
        tls = None if insecure else tls_context(self.cert_dirs, registry)
        return Client(endpoint, credential, insecure=insecure, tls=tls, proxy=self.proxy)


def login(registry: str, credential: Credential, config: RegistryConfig) -> Path:
    """Check ``credential`` against ``registry`` (ping /v2/), then store it in config.json."""
    host = split_namespace(registry)[0]
    with config.client(host, credential) as client:
        resp = client.ping()
    if resp.status in (401, 403):
        raise RegistryError(
            f"registry {host} rejected the credentials of {credential.username!r} "
            f"(HTTP {resp.status})",
            hint=f"check the user name and password (or token), then `layerforge login {host}`",
        )
    if resp.status >= 300:
        raise RegistryError(f"registry {host}: /v2/ answered HTTP {resp.status}; is it a registry?")
    save_login(config.docker_config, host, credential)
    return config.docker_config
