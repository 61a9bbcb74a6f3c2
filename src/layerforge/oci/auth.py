"""Registry credentials and challenges.

Credentials come from a Docker ``config.json`` (``auths`` entries with ``auth`` =
base64(user:password) or an ``identitytoken``; ``credHelpers``/``credsStore`` run
``docker-credential-<helper> get``), written there by ``layerforge login``.
``WWW-Authenticate`` challenges (``Bearer realm=..,service=..,scope=..`` or ``Basic``) are
parsed here; the token exchange itself lives in :mod:`layerforge.oci.registry`.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layerforge import proc
from layerforge.errors import LayerforgeError, RegistryError
from layerforge.fsutil import atomic_write
from layerforge.oci.reference import DEFAULT_ENDPOINT, DEFAULT_REGISTRY

# The key Docker itself writes for its default registry.
DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_PARAM = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lowercase: bearer | basic
    params: tuple[tuple[str, str], ...] = ()

    def get(self, name: str) -> str | None:
        return dict(self.params).get(name)


@dataclass(frozen=True)
class Credential:
    username: str = ""
    password: str = ""
    identity_token: str = ""  # OAuth2 refresh token (``identitytoken``)

    def basic_header(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


def parse_challenge(header: str) -> Challenge:
    """``Bearer realm="https://a/token",service="reg",scope="repository:x:pull"``."""
    scheme, _, rest = header.strip().partition(" ")
    params: list[tuple[str, str]] = []
    pos = 0
    while pos < len(rest):
        match = _PARAM.match(rest, pos)
        if match is None or match.end() == pos:
            break
        value = match.group(2) if match.group(2) is not None else match.group(3)
        params.append((match.group(1).lower(), re.sub(r"\\(.)", r"\1", value)))
        pos = match.end()
    return Challenge(scheme.lower(), tuple(params))


def default_config_path(env: Mapping[str, str]) -> Path:
    """``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``."""
    directory = env.get("DOCKER_CONFIG")
    if directory:
        return Path(directory) / "config.json"
    return Path(env.get("HOME") or Path.home()) / ".docker" / "config.json"


def _host_of(key: str) -> str:
    text = key.removeprefix("https://").removeprefix("http://")
    return text.split("/", 1)[0]


def _aliases(host: str) -> set[str]:
    if host in (DEFAULT_REGISTRY, DEFAULT_ENDPOINT, "index.docker.io"):
        return {DEFAULT_REGISTRY, DEFAULT_ENDPOINT, "index.docker.io"}
    return {host}


def read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RegistryError(
            f"{path} is not valid JSON: {exc}", hint="fix or delete it, then `layerforge login`"
        ) from None
    return data if isinstance(data, dict) else {}


def lookup(config: Mapping[str, Any], host: str) -> Credential | None:
    """The credential for ``host`` in a parsed config.json, if any."""
    names = _aliases(host)
    helpers = config.get("credHelpers") or {}
    for key, helper in helpers.items():
        if _host_of(key) in names:
            return _from_helper(str(helper), key)
    for key, entry in (config.get("auths") or {}).items():
        if _host_of(key) in names and isinstance(entry, dict):
            found = _from_entry(entry, key)
            if found is not None:
                return found
    store = config.get("credsStore")
    if store:
        return _from_helper(str(store), DOCKER_HUB_KEY if DEFAULT_REGISTRY in names else host)
    return None


def _from_entry(entry: Mapping[str, Any], key: str) -> Credential | None:
    token = str(entry.get("identitytoken") or "")
    username = str(entry.get("username") or "")
    password = str(entry.get("password") or "")
    if entry.get("auth"):
        try:
            decoded = base64.b64decode(str(entry["auth"]), validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            raise RegistryError(
                f"the auth entry for {key} in config.json is not base64 'user:password'",
                hint=f"run `layerforge login {_host_of(key)}` again",
            ) from None
        username, _, password = decoded.partition(":")
    if not (username or password or token):
        return None
    return Credential(username, password, token)


def _from_helper(helper: str, server: str) -> Credential | None:
    try:
        result = proc.run([f"docker-credential-{helper}", "get"], input_text=server, check=False)
    except LayerforgeError:
        return None
    if result.returncode != 0:
        return None
    try:
        doc = json.loads(result.stdout)
    except ValueError:
        return None
    user, secret = str(doc.get("Username", "")), str(doc.get("Secret", ""))
    if user == "<token>":
        return Credential(identity_token=secret)
    return Credential(user, secret)


def save_login(path: Path, host: str, credential: Credential) -> None:
    """Add or replace ``auths[host]`` in config.json (mode 0600, atomic)."""
    config = read_config(path)
    auths = dict(config.get("auths") or {})
    key = DOCKER_HUB_KEY if host in _aliases(DEFAULT_REGISTRY) else host
    for old in [k for k in auths if _host_of(k) in _aliases(host)]:
        del auths[old]
    raw = f"{credential.username}:{credential.password}".encode()
    auths[key] = {"auth": base64.b64encode(raw).decode()}
    config["auths"] = auths
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(path, json.dumps(config, indent="\t").encode() + b"\n")
    os.chmod(path, 0o600)
