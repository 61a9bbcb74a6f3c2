"""``docker-compose.yml`` / ``compose.yaml``: which Dockerfile each service builds, with what
build arguments, and the run settings compose overrides (command, entrypoint, environment,
ports, user, healthcheck)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from layerforge.errors import UsageError


@dataclass(frozen=True)
class ComposeService:
    name: str
    file: Path
    context: Path | None  # absolute; None when the service only names an image
    dockerfile: Path | None  # absolute
    args: dict[str, str] = field(default_factory=dict)
    image: str | None = None
    command: tuple[str, ...] | str | None = None
    entrypoint: tuple[str, ...] | str | None = None
    environment: dict[str, str] = field(default_factory=dict)
    ports: tuple[str, ...] = ()
    user: str | None = None
    healthcheck: bool = False


def _pairs(value: Any) -> dict[str, str]:
    """A compose mapping or a list of ``KEY=VALUE`` strings."""
    if isinstance(value, dict):
        return {str(k): "" if v is None else str(v) for k, v in value.items()}
    out: dict[str, str] = {}
    for item in value or ():
        key, _, val = str(item).partition("=")
        out[key] = val
    return out


def _argv(value: Any) -> tuple[str, ...] | str | None:
    if value is None:
        return None
    if isinstance(value, list):
        return tuple(str(v) for v in value)
    return str(value)


def read(path: Path) -> list[ComposeService]:
    import yaml  # noqa: PLC0415 (third-party, loaded only by `init --from`)

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise UsageError(f"{path}: cannot be read as a compose file: {exc}") from None
    services = (data or {}).get("services") if isinstance(data, dict) else None
    if not isinstance(services, dict):
        return []
    out: list[ComposeService] = []
    for name, raw in services.items():
        svc = raw if isinstance(raw, dict) else {}
        build = svc.get("build")
        context: Path | None = None
        dockerfile: Path | None = None
        args: dict[str, str] = {}
        if isinstance(build, str):
            context = (path.parent / build).resolve()
        elif isinstance(build, dict):
            context = (path.parent / str(build.get("context", "."))).resolve()
            args = _pairs(build.get("args"))
        if context is not None:
            written = build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else None
            dockerfile = (context / str(written or "Dockerfile")).resolve()
        ports = tuple(str(p).rsplit(":", 1)[-1] for p in svc.get("ports") or ())
        out.append(
            ComposeService(
                name=str(name),
                file=path,
                context=context,
                dockerfile=dockerfile,
                args=args,
                image=svc.get("image"),
                command=_argv(svc.get("command")),
                entrypoint=_argv(svc.get("entrypoint")),
                environment=_pairs(svc.get("environment")),
                ports=ports,
                user=None if svc.get("user") is None else str(svc["user"]),
                healthcheck="healthcheck" in svc,
            )
        )
    return out
