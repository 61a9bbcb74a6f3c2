"""Forward proxies for registry traffic: which proxy (if any) a URL goes through.

``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` follow curl's rules: the lowercase variable wins
over the uppercase one; ``NO_PROXY`` is a comma list of ``*``, host names (``corp`` and
``.corp`` both match ``corp`` and every name under it), ``host:port``, IP addresses and CIDR
ranges; loopback is not implied. Credentials in the proxy URL (``http://u:p@proxy:3128``)
become ``Proxy-Authorization: Basic``.

Pure: :meth:`ProxyConfig.from_env` reads the mapping it is given (the CLI passes
``os.environ`` through :func:`layerforge.api.registry_config`).
"""

from __future__ import annotations

import base64
import ipaddress
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

from layerforge.errors import UsageError


@dataclass(frozen=True)
class ProxyURL:
    """One proxy: where to connect, and the ``Proxy-Authorization`` value if any."""

    host: str
    port: int
    authorization: str | None = None

    @property
    def display(self) -> str:
        """The proxy as messages name it (never its credentials)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Proxy-Authorization": self.authorization} if self.authorization else {}

    @classmethod
    def parse(cls, value: str, variable: str) -> ProxyURL:
        text = value.strip()
        if "://" not in text:
            text = "http://" + text  # curl's default scheme for a proxy
        parts = urllib.parse.urlsplit(text)
        if parts.scheme != "http" or not parts.hostname:
            raise UsageError(
                f"{variable}={value!r}: not an http:// proxy URL",
                hint="set it to http://[user:password@]host:port (HTTPS and SOCKS proxies are "
                "not supported)",
            )
        try:
            port = parts.port or 80
        except ValueError:
            raise UsageError(f"{variable}={value!r}: the port is not a number") from None
        auth = None
        if parts.username is not None:
            user = urllib.parse.unquote(parts.username)
            password = urllib.parse.unquote(parts.password or "")
            auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        return cls(parts.hostname, port, auth)


def _env(env: Mapping[str, str], name: str) -> tuple[str, str] | None:
    """(variable, value) of ``name``, the lowercase spelling first (as curl)."""
    for variable in (name.lower(), name.upper()):
        value = env.get(variable)
        if value is not None and value.strip():
            return variable, value
    return None


@dataclass(frozen=True)
class ProxyConfig:
    """The proxies for plain-HTTP and HTTPS registries, and the hosts that bypass them.

    ``http``/``https`` are (variable, value) as found; a value is parsed (and a bad one
    refused) only when a registry request would go through it, so a proxy setting meant for
    other tools does not stop commands that talk to no registry."""

    http: tuple[str, str] | None = None
    https: tuple[str, str] | None = None
    no_proxy: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ProxyConfig:
        bypass = _env(env, "no_proxy")
        return cls(
            _env(env, "http_proxy"),
            _env(env, "https_proxy"),
            tuple(e.strip() for e in bypass[1].split(",") if e.strip()) if bypass else (),
        )

    def for_url(self, scheme: str, host: str, port: int) -> ProxyURL | None:
        """The proxy that ``scheme://host:port`` goes through; None: connect directly."""
        found = self.https if scheme == "https" else self.http
        if found is None or bypassed(self.no_proxy, host, port):
            return None
        return ProxyURL.parse(found[1], found[0])

    def for_netloc(self, scheme: str, netloc: str) -> ProxyURL | None:
        parts = urllib.parse.urlsplit(f"//{netloc}")
        default = 443 if scheme == "https" else 80
        return self.for_url(scheme, parts.hostname or netloc, parts.port or default)


def bypassed(entries: tuple[str, ...], host: str, port: int) -> bool:
    """True when ``host:port`` matches one of the NO_PROXY ``entries``."""
    name = host.strip("[]").lower().rstrip(".")
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        address = None
    for raw in entries:
        entry = raw.strip().lower()
        if entry == "*":
            return True
        pattern, want = _split_port(entry)
        if want is not None and want != port:
            continue
        pattern = pattern.strip("[]").rstrip(".")
        if address is not None:
            try:
                if address in ipaddress.ip_network(pattern, strict=False):
                    return True
            except ValueError:
                pass
            continue
        suffix = pattern.lstrip(".").removeprefix("*.")
        if suffix and (name == suffix or name.endswith("." + suffix)):
            return True
    return False


def _split_port(entry: str) -> tuple[str, int | None]:
    """``host:port`` -> (host, port); IPv6 without brackets and CIDRs keep their colons."""
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        if port.isdigit():
            return host, int(port)
    return entry, None
