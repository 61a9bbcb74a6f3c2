"""Dockerfiles as stages of instructions, with ``ARG`` values expanded the way Docker scopes
them, and ``RUN`` text split into shell commands."""

from __future__ import annotations

import io
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from layerforge.errors import UsageError

_VAR = re.compile(r"\$(?:\{(\w+)(?::?-([^}]*))?\}|(\w+))")


@dataclass(frozen=True)
class Instruction:
    file: Path
    line: int  # 1-based, the first line
    name: str  # upper case: RUN, COPY, ...
    value: str  # ARGs expanded
    raw: str  # as written (one line)


@dataclass
class Stage:
    ref: str  # the FROM image, ARGs expanded
    alias: str | None
    instructions: list[Instruction] = field(default_factory=list)


@dataclass
class DockerfileDoc:
    path: Path
    preamble: list[Instruction]  # ARGs (and comments-free directives) before the first FROM
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def instructions(self) -> list[Instruction]:
        return [*self.preamble, *(i for s in self.stages for i in s.instructions)]


def expand(text: str, values: dict[str, str]) -> str:
    """``$X``, ``${X}`` and ``${X:-default}`` replaced where X is known; others kept."""

    def one(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(3)
        if name in values:
            return values[name]
        if m.group(2) is not None:
            return m.group(2)
        return m.group(0)

    return _VAR.sub(one, text)


def _arg(value: str) -> tuple[str, str | None]:
    name, sep, default = value.strip().partition("=")
    return name.strip(), (default.strip().strip("\"'") if sep else None)


def parse(path: Path, build_args: dict[str, str] | None = None) -> DockerfileDoc:
    """The stages of the Dockerfile at ``path``; ``build_args`` (compose ``build.args``)
    override the Dockerfile's ``ARG`` defaults."""
    from dockerfile_parse import DockerfileParser  # noqa: PLC0415 (only `init --from`)

    try:
        text, heredocs = fold_heredocs(path.read_text())
        parser = DockerfileParser(fileobj=io.BytesIO(text.encode()), env_replace=False)
        structure = parser.structure
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"{path}: cannot be read as a Dockerfile: {exc}") from None
    reader = _Reader(path, build_args or {})
    for item in structure:
        name = str(item["instruction"]).upper()
        line = int(item["startline"]) + 1
        if name != "COMMENT":
            value = str(item["value"])
            if line in heredocs:
                value = value.replace(HEREDOC_MARK, heredocs[line])
            reader.add(name, value, line)
    if not reader.stages:
        raise UsageError(f"{path}: no FROM instruction", hint="is this file a Dockerfile?")
    return DockerfileDoc(path, reader.preamble, reader.stages)


class _Reader:
    """ARG scoping as Docker does it: an ARG before the first FROM is visible in FROM lines
    only; inside a stage, an ARG (re)declared there is visible below it. Build arguments
    override the defaults."""

    def __init__(self, path: Path, overrides: dict[str, str]) -> None:
        self.path = path
        self.overrides = overrides
        self.global_args: dict[str, str] = {}
        self.scope: dict[str, str] = {}
        self.preamble: list[Instruction] = []
        self.stages: list[Stage] = []

    def add(self, name: str, raw: str, line: int) -> None:
        if name == "ARG":
            key, default = _arg(raw)
            value = self.overrides.get(key, default)
            if value is None:
                value = self.global_args.get(key)
            target = self.scope if self.stages else self.global_args
            if value is not None:
                target[key] = expand(value, target)
        if name == "FROM":
            words = [w for w in expand(raw, self.global_args).split() if not w.startswith("--")]
            alias = words[2] if len(words) >= 3 and words[1].lower() == "as" else None
            self.stages.append(Stage(words[0] if words else "", alias))
            self.scope = {}
            self.stages[-1].instructions.append(
                Instruction(self.path, line, name, " ".join(words), raw)
            )
            return
        if not self.stages:
            self.preamble.append(Instruction(self.path, line, name, raw, raw))
            return
        value = expand(raw, self.scope) if name != "ARG" else raw
        if name == "ENV":
            self.scope.update(env_pairs(value))
        self.stages[-1].instructions.append(Instruction(self.path, line, name, value, raw))


HEREDOC_MARK = "\x00heredoc\x00"
_HEREDOC = re.compile(r"<<(-?)([\"']?)([A-Za-z_][A-Za-z0-9_]*)\2")


def fold_heredocs(text: str) -> tuple[str, dict[int, str]]:
    """Dockerfile heredocs (``RUN <<EOT`` ... ``EOT``), which dockerfile-parse does not
    know: each body is taken out (its lines left blank, so line numbers stay) and put back
    into its instruction's value, as ``<<EOT\\nBODY\\nEOT`` (first line number -> that)."""
    lines = text.split("\n")
    found: dict[int, str] = {}
    i = 0
    while i < len(lines):
        m = _HEREDOC.search(lines[i]) if not lines[i].lstrip().startswith("#") else None
        if m is None:
            i += 1
            continue
        word, start = m.group(3), i
        body: list[str] = []
        i += 1
        while i < len(lines) and lines[i].strip() != word:
            body.append(lines[i])
            lines[i] = ""
            i += 1
        if i < len(lines):
            lines[i] = ""
        found[start + 1] = m.group(0) + "\n" + "\n".join(body) + "\n" + word
        lines[start] = lines[start][: m.start()] + HEREDOC_MARK + lines[start][m.end() :]
        i += 1
    return "\n".join(lines), found


def heredoc_script(value: str) -> str | None:
    """The script of a ``RUN <<EOT`` heredoc with nothing before it (run by the shell as it
    is); None for any other value."""
    m = _HEREDOC.match(value.strip())
    if m is None or "\n" not in value:
        return None
    body = value.strip().split("\n")[1:-1]
    return "\n".join(body)


def env_pairs(value: str) -> dict[str, str]:
    """``ENV A=1 B="two words"`` or the legacy ``ENV A 1``."""
    try:
        words = shlex.split(value)
    except ValueError:
        words = value.split()
    if words and "=" not in words[0]:
        return {words[0]: value.split(None, 1)[1].strip() if len(words) > 1 else ""}
    out: dict[str, str] = {}
    for word in words:
        key, _, val = word.partition("=")
        out[key] = val
    return out


def exec_form(value: str) -> tuple[str, ...] | None:
    """The argv of a JSON (exec) form ``["a", "b"]``; None for the shell form."""
    text = value.strip()
    if not text.startswith("["):
        return None
    try:
        parsed = json.loads(text)
    except ValueError:
        return None
    if isinstance(parsed, list) and all(isinstance(x, str) for x in parsed):
        return tuple(parsed)
    return None


def command_argv(value: str) -> tuple[str, ...]:
    """CMD/ENTRYPOINT: the exec form as it is, the shell form as ``/bin/sh -c TEXT``."""
    argv = exec_form(value)
    return argv if argv is not None else ("/bin/sh", "-c", value.strip())


def split_shell(text: str) -> list[str]:
    """The commands of a ``RUN`` line, split on ``&&``, ``||`` and ``;`` outside quotes (a
    quoted ``;`` in ``python -c "a; b"`` stays in its command), each kept as written, without
    a trailing ``# comment``."""
    commands: list[str] = []
    current: list[str] = []
    quote = ""
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            current.append(ch)
            if ch == "\\" and quote == '"' and i + 1 < len(text):
                current.append(text[i + 1])
                i += 1
            elif ch == quote:
                quote = ""
        elif ch == "\\" and i + 1 < len(text):
            current.append(text[i : i + 2])
            i += 1
        elif ch in "'\"":
            quote = ch
            current.append(ch)
        elif ch == "#" and (not current or current[-1] in " \t"):
            while i < len(text) and text[i] != "\n":
                i += 1
            continue
        elif text.startswith(("&&", "||"), i) or ch in ";\n":
            commands.append("".join(current))
            current = []
            i += 2 if ch in "&|" else 1
            continue
        else:
            current.append(ch)
        i += 1
    commands.append("".join(current))
    return [c.strip() for c in commands if c.strip()]
