"""The mapping from Dockerfile instructions (and compose settings) to manifest keys, one
:class:`Row` for each instruction, and for each shell command of a ``RUN``: nothing is lost
silently. docs/howto-migrate.md has the table in words."""

from __future__ import annotations

import json
import posixpath
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from layerforge.migrate.compose import ComposeService
from layerforge.migrate.dockerfile import (
    DockerfileDoc,
    Instruction,
    Stage,
    command_argv,
    env_pairs,
    exec_form,
    heredoc_script,
    split_shell,
)
from layerforge.migrate.pipreq import PipScan, scan

OsMode = Literal["registry", "debootstrap"]

# Debian suite -> its python3, and back (what { debootstrap = SUITE } gives a venv)
SUITE_PYTHON = {"bullseye": "3.9", "bookworm": "3.11", "trixie": "3.13"}
PYTHON_SUITE = {v: k for k, v in SUITE_PYTHON.items()}

MANIFEST_DOC = "docs/manifest.md"


@dataclass(frozen=True)
class Row:
    """One instruction (or one command of a RUN) and where it went."""

    file: str  # relative to the repository
    line: int
    instruction: str
    text: str
    target: str  # a manifest key, "dropped", "kept-as-run", "not-migrated", "build-stage", ...
    detail: str

    def to_json(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "instruction": self.instruction,
            "text": self.text,
            "target": self.target,
            "detail": self.detail,
        }


# targets that mean "the instruction has no place in the result, and that is a problem"
NOT_MIGRATED = "not-migrated"


@dataclass
class Draft:
    """What one Dockerfile's final stage (with compose's overrides) asks of a node."""

    name: str
    doc: DockerfileDoc
    context: Path  # the build context, absolute
    parent_ref: str
    parent: str | None = None  # a draft's name
    os_from: str | dict[str, str] | None = None
    python: str | None = None
    system: list[str] = field(default_factory=list)
    run: list[str] = field(default_factory=list)
    context_dir: str | None = None  # relative to the repository
    context_target: str | None = None  # where the Dockerfile copied it (run steps copy it)
    req_lines: list[str] = field(default_factory=list)  # requirement / -r / -c lines
    req_files: list[Path] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    verify: list[str] = field(default_factory=list)
    workdir: str | None = None
    source: str | None = None
    command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    notes: list[str] = field(default_factory=list)  # TOML comments (keys to set by hand)
    expose: list[int | str] = field(default_factory=list)  # 8000 (tcp) or "9000/udp"
    healthcheck: dict[str, object] | bool | None = None  # the manifest's table, or false
    runtime: dict[str, list[str]] = field(default_factory=dict)
    network_run: bool = False
    services: list[ComposeService] = field(default_factory=list)
    is_base: bool = False


@dataclass
class Migration:
    root: Path
    python: str
    drafts: dict[str, Draft]
    rows: list[Row]
    indexes: list[tuple[str, str]]  # (name, url) in priority order; the default one last
    default_index: str | None
    find_links: list[str]
    generated: dict[str, str]  # repository-relative path -> text of a requirements file
    errors: list[str]
    applied: list[str] = field(default_factory=list)  # changes to the Dockerfiles' structure
    notes: list[str] = field(default_factory=list)  # what the requirements files had, said once


def rel(root: Path, path: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix() or "."
    except ValueError:
        return str(path)


def node_name(text: str) -> str:
    name = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")
    return (name or "app")[:63]


def repo_of(ref: str) -> str:
    """``acme/base-cpu:1.4.0`` -> ``acme/base-cpu``."""
    ref = ref.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        ref = ref[: len(ref) - len(last)] + last.split(":", 1)[0]
    return ref


# -- RUN commands -----------------------------------------------------------------------

_CACHE = re.compile(
    r"^(rm\s+-(r|f|rf|fr)\s+(/root/\.cache|~/\.cache|/var/lib/apt/lists|/var/cache/apt|"
    r"/tmp/)|find\s.*(__pycache__|\.pyc)|apt-get\s+clean|apt\s+clean|pip3?\s+cache\s+purge)"
)
_PIP = re.compile(r"^(?:(?:python3?(?:\.\d+)?|/\S+/python3?)\s+-m\s+pip|pip3?|uv\s+pip)\s+(\S+)")
_APT_INSTALL = re.compile(r"^(?:DEBIAN_FRONTEND=\S+\s+)?apt(?:-get)?\s+(?:\S+\s+)*?install\b")
_PY_C = re.compile(r"^(?:python3?(?:\.\d+)?|/\S+/python3?)\s+-c\s")


@dataclass
class PipArgs:
    files: list[str] = field(default_factory=list)
    constraints: list[str] = field(default_factory=list)
    specs: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    indexes: list[tuple[str, str]] = field(default_factory=list)
    editable: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    prefix: bool = False


_WITH_VALUE = {"-r", "--requirement", "-c", "--constraint", "-i", "--index-url"}
_WITH_VALUE |= {"--extra-index-url", "-f", "--find-links", "-e", "--editable", "-w"}
_WITH_VALUE |= {"--wheel-dir", "--prefix", "--target", "-t", "--root", "--trusted-host"}


_PIP_LISTS = {
    "-r": "files",
    "--requirement": "files",
    "-c": "constraints",
    "--constraint": "constraints",
    "-e": "editable",
    "--editable": "editable",
}
_PIP_INDEXES = {
    "-i": "--index-url",
    "--index-url": "--index-url",
    "--extra-index-url": "--extra-index-url",
    "-f": "--find-links",
    "--find-links": "--find-links",
}


def _pip_word(out: PipArgs, name: str, value: str | None, word: str) -> None:
    if name in _PIP_LISTS:
        getattr(out, _PIP_LISTS[name]).append(value or "")
    elif name in _PIP_INDEXES:
        out.indexes.append((_PIP_INDEXES[name], value or ""))
    elif name in ("--prefix", "--target", "-t", "--root"):
        out.prefix = True
    elif name.startswith("-"):
        out.dropped.append(word if value is None else f"{name} {value}")
    elif word.startswith((".", "/")) or "/" in word or word.endswith((".whl", ".tar.gz")):
        out.paths.append(word)
    else:
        out.specs.append(word)


def pip_args(words: list[str]) -> PipArgs:
    out = PipArgs()
    i = 0
    while i < len(words):
        word = words[i]
        name, eq, inline = word.partition("=") if word.startswith("--") else (word, "", "")
        value = inline if eq else None
        if value is None and name in _WITH_VALUE:
            i += 1
            value = words[i] if i < len(words) else ""
        i += 1
        _pip_word(out, name, value, word)
    return out


def _words(command: str) -> list[str]:
    try:
        return shlex.split(command)
    except ValueError:
        return command.split()


def apt_packages(command: str) -> list[str]:
    words = _words(command)
    start = words.index("install") + 1 if "install" in words else len(words)
    out: list[str] = []
    skip = False
    for word in words[start:]:
        if skip:
            skip = False
        elif word in ("-o", "-t", "--target-release"):
            skip = True
        elif not word.startswith("-"):
            out.append(word)
    return out


_RUN_FLAG = re.compile(r"^--(mount|network|security)=\S*\s*")


def run_commands(value: str) -> list[str]:
    """The shell commands of a RUN value: its BuildKit flags (``--mount=type=cache``...)
    dropped (layerforge's run steps have no cache mounts; pip's cache is never in a layer),
    a heredoc kept whole, anything else split on ``&&``, ``||`` and ``;``."""
    text = value.strip()
    while _RUN_FLAG.match(text):
        text = _RUN_FLAG.sub("", text, count=1)
    script = heredoc_script(text)
    return [script] if script is not None else split_shell(text)


def _later_steps(instructions: list[Instruction]) -> str:
    """The text of the run steps below a COPY (pip lines, cache cleanup and smoke tests
    aside): a copied directory they name is a build input (context), not the application."""
    return " ".join(
        cmd
        for i in instructions
        if i.name == "RUN"
        for cmd in run_commands(i.value)
        if not (_PIP.match(cmd) or _CACHE.match(cmd) or _PY_C.match(cmd))
    )


# -- the mapper ---------------------------------------------------------------------------


class Mapper:
    def __init__(self, root: Path, os_mode: OsMode, tags: dict[str, Path]) -> None:
        self.root = root
        self.os_mode = os_mode
        self.tags = tags  # image repository -> Dockerfile (absolute)
        self.tag_rules: dict[str, str] = {}  # image repository -> the rule that matched it
        self.rows: list[Row] = []
        self.errors: list[str] = []
        self.pip = PipScan()
        self.pip_indexes: list[tuple[str, str, str]] = []  # option, value, where

    def row(self, ins: Instruction, text: str, target: str, detail: str) -> None:
        self.rows.append(Row(rel(self.root, ins.file), ins.line, ins.name, text, target, detail))

    def missing(self, ins: Instruction, text: str, detail: str) -> None:
        self.row(ins, text, NOT_MIGRATED, detail)

    # -- FROM -----------------------------------------------------------------------------

    def resolve_from(self, d: Draft, ins: Instruction, drafts: dict[Path, Draft]) -> None:
        ref = d.parent_ref
        own = self.tags.get(repo_of(ref))
        if own is not None and own in drafts and own != d.doc.path:
            d.parent = drafts[own].name
            self.row(
                ins,
                ref,
                "from",
                f'from = "{d.parent}" (this repository\'s image; '
                f"{self.tag_rules.get(repo_of(ref), 'matched')})",
            )
            return
        self.os_source(d, ins, ref)

    def os_source(self, d: Draft, ins: Instruction, ref: str) -> None:
        if "$" in ref:
            self.errors.append(
                f"{rel(self.root, ins.file)}:{ins.line}: FROM {ref}: the ARG "
                "has no value; give it a default, or set it in compose's "
                "build.args"
            )
        repo = repo_of(ref).removeprefix("docker.io/").removeprefix("library/")
        tag = ref.split("@", 1)[0].rsplit("/", 1)[-1].partition(":")[2]
        suite = next((s for s in SUITE_PYTHON if s in tag), None)
        python: str | None = None
        if repo == "python":
            m = re.match(r"(3\.\d+)", tag)
            python = m.group(1) if m else None
            suite = suite or (PYTHON_SUITE.get(python) if python else None)
        elif repo == "debian" and suite:
            python = SUITE_PYTHON[suite]
        d.python = python
        if self.os_mode == "debootstrap" and suite and (repo in ("python", "debian")):
            if python is None or SUITE_PYTHON[suite] == python:
                d.os_from = {"debootstrap": suite}
                self.row(
                    ins,
                    ref,
                    "from",
                    f'from = {{ debootstrap = "{suite}" }}, python '
                    f"{SUITE_PYTHON[suite]} (Debian {suite}'s own python3)",
                )
                d.python = SUITE_PYTHON[suite]
                return
            self.row(
                ins,
                ref,
                "from",
                f'from = "{ref}" (kept: Debian {suite} has python '
                f"{SUITE_PYTHON[suite]}, not {python}; `lock` needs the image registry)",
            )
            d.os_from = ref
            return
        d.os_from = ref
        why = " (Ubuntu's archive is not a debootstrap source here)" if repo == "ubuntu" else ""
        self.row(
            ins, ref, "from", f'from = "{ref}", an OS image from a registry, pinned by `lock`{why}'
        )

    # -- stages ---------------------------------------------------------------------------

    def map_doc(self, d: Draft) -> None:
        built: dict[str, PipArgs] = {}  # stage alias/index -> what its pip lines install
        final = d.doc.final
        for ins in d.doc.preamble:
            self.row(ins, ins.raw, "arg", f"expanded where used ({ins.value})")
        for index, stage in enumerate(d.doc.stages):
            if stage is final:
                self.map_final(d, stage, built)
            else:
                built[stage.alias or str(index)] = self.map_build_stage(d, stage)

    def map_build_stage(self, d: Draft, stage: Stage) -> PipArgs:
        paths: dict[str, str] = {}
        workdir = "/"
        got = PipArgs()
        for ins in stage.instructions:
            if ins.name == "FROM":
                self.row(
                    ins,
                    ins.value,
                    "build-stage",
                    "a build stage is not an image: "
                    "layerforge installs wheels directly (uv), so what it builds is "
                    "mapped where the final stage copies it",
                )
            elif ins.name in ("COPY", "ADD"):
                self.copy_paths(d, ins, paths, workdir)
                self.row(ins, ins.value, "build-stage", "read by the build stage's pip lines")
            elif ins.name == "WORKDIR":
                workdir = posixpath.join(workdir, ins.value.strip())
                self.row(ins, ins.value, "build-stage", "the build stage's directory")
            elif ins.name == "RUN":
                for cmd in run_commands(ins.value):
                    self.build_command(d, ins, cmd, paths, workdir, got)
            else:
                self.row(
                    ins,
                    ins.value,
                    "build-stage",
                    "only affects the build stage, which is not an image",
                )
        return got

    def build_command(
        self,
        d: Draft,
        ins: Instruction,
        cmd: str,
        paths: dict[str, str],
        workdir: str,
        got: PipArgs,
    ) -> None:
        pip = _PIP.match(cmd)
        if pip and pip.group(1) in ("wheel", "install"):
            args = pip_args(_words(cmd)[_words(cmd).index(pip.group(1)) + 1 :])
            lines = self.pip_lines(d, ins, args, paths, workdir)
            got.files.extend(lines)
            self.row(
                ins,
                cmd,
                "build-stage",
                "its requirements become the final image's "
                "requirements (where it copies the result)",
            )
        elif _APT_INSTALL.match(cmd):
            self.row(
                ins,
                cmd,
                "dropped",
                "build tools of a build stage: layerforge installs "
                "wheels, so the image never needs them (an sdist-only dependency makes "
                "`lock` fail with uv's 'wheels are required' error)",
            )
        else:
            self.row(ins, cmd, "build-stage", "a build step: the build stage is not an image")

    def map_final(self, d: Draft, stage: Stage, built: dict[str, PipArgs]) -> None:
        paths: dict[str, str] = {}  # image path -> repository-relative host path
        workdir = "/"
        instructions = stage.instructions
        for pos, ins in enumerate(instructions):
            if ins.name == "RUN":
                for cmd in run_commands(ins.value):
                    self.run_command(d, ins, cmd, paths, workdir, built)
            elif ins.name in ("COPY", "ADD"):
                self.copy(d, ins, paths, workdir, _later_steps(instructions[pos + 1 :]), built)
            elif ins.name == "WORKDIR":
                workdir = self.workdir(d, ins, workdir)
            elif ins.name in ("ENV", "LABEL", "ARG"):
                self.pairs(d, ins)
            elif ins.name in ("CMD", "ENTRYPOINT"):
                self.cmd(d, ins, paths)
            elif ins.name != "FROM":  # FROM: resolved by map_fleet, which knows every draft
                self.config_row(d, ins)

    def workdir(self, d: Draft, ins: Instruction, workdir: str) -> str:
        workdir = posixpath.join(workdir, ins.value.strip())
        d.workdir = d.workdir if d.source is not None else workdir
        on_base = " (on a base, run steps start with `cd` there)" if d.is_base else ""
        self.row(ins, ins.value, "workdir", f'workdir = "{workdir}"{on_base}')
        return workdir

    def pairs(self, d: Draft, ins: Instruction) -> None:
        if ins.name == "ARG":
            self.row(ins, ins.value, "arg", "expanded in the instructions below")
            return
        pairs = env_pairs(ins.value)
        if ins.name == "ENV":
            venv = {k: v for k, v in pairs.items() if k in ("PATH", "VIRTUAL_ENV")}
            pairs = {k: v for k, v in pairs.items() if k not in venv}
            if venv:
                self.row(
                    ins,
                    " ".join(f"{k}={v}" for k, v in venv.items()),
                    "dropped",
                    "layerforge sets PATH and VIRTUAL_ENV for its venv at /opt/venv",
                )
            if not pairs:
                return
            d.env.update(pairs)
        else:
            d.labels.update(pairs)
        key = ins.name.lower() if ins.name == "ENV" else "labels"
        self.row(ins, ins.value, key, f"{key}: " + ", ".join(sorted(pairs)))

    def config_row(self, d: Draft, ins: Instruction) -> None:
        where = f"[{'bases' if d.is_base else 'services'}.{d.name}]"
        if ins.name == "USER":
            user = ins.value.strip()
            d.notes.append(f'user = "{user}"')
            self.row(
                ins,
                ins.value,
                "user",
                f'USER {user}: set user = "{user}" in {where} '
                f"({MANIFEST_DOC}); written as a comment in the manifest: layerforge creates "
                "the user with uid 10001 unless told its uid, and a user the Dockerfiles "
                "make with useradd has another one (`user = { name, uid, gid }`)",
            )
        elif ins.name == "EXPOSE":
            ports = [port_of(p) for p in ins.value.split()]
            d.expose += [p for p in ports if p not in d.expose]
            self.row(ins, ins.value, "expose", f"expose = {ports}")
        elif ins.name == "HEALTHCHECK":
            check = healthcheck_of(ins.value)
            if check is None:
                d.notes.append(f"healthcheck: {ins.value}")
                self.missing(
                    ins,
                    ins.value,
                    f"HEALTHCHECK: not understood; set healthcheck in {where} by hand "
                    f"({MANIFEST_DOC})",
                )
            else:
                d.healthcheck = check
                self.row(ins, ins.value, "healthcheck", f"healthcheck in {where}")
        elif ins.name in ("VOLUME", "STOPSIGNAL"):
            d.notes.append(f"{ins.name} {ins.value}")
            self.missing(
                ins,
                ins.value,
                f"{ins.name}: the manifest has no key for it yet; "
                "set it where the image runs (your orchestrator)",
            )
        elif ins.name == "SHELL":
            self.missing(
                ins,
                ins.value,
                "SHELL: run steps run with /bin/sh; wrap a step in "
                "`bash -c '...'` where it needs another shell",
            )
        elif ins.name == "ONBUILD":
            self.missing(
                ins,
                ins.value,
                "ONBUILD has no meaning without Docker builds: add the step to each child by hand",
            )
        elif ins.name == "MAINTAINER":
            d.labels["org.opencontainers.image.authors"] = ins.value.strip()
            self.row(ins, ins.value, "labels", "labels: org.opencontainers.image.authors")
        else:
            self.missing(ins, ins.value, f"{ins.name} is not known to the migration")

    def cmd(self, d: Draft, ins: Instruction, paths: dict[str, str]) -> None:
        argv = command_argv(ins.value)
        key = "command" if ins.name == "CMD" else "entrypoint"
        if ins.name == "CMD":
            d.command = argv
        else:
            d.entrypoint = argv
        form = "" if exec_form(ins.value) is not None else " (shell form, run by /bin/sh -c)"
        if d.is_base:
            self.row(ins, ins.value, "dropped", f"a base has no {key}: each service sets its own")
        else:
            self.row(ins, ins.value, key, f"{key} = {list(argv)}{form}")
        self.runtime_installs(d, ins, argv, paths)

    def runtime_installs(
        self, d: Draft, ins: Instruction, argv: tuple[str, ...], paths: dict[str, str]
    ) -> None:
        """An entrypoint script that pip-installs at start: propose a runtime group."""
        for word in argv[:2]:
            host = self.host_path(word, paths, "/")
            if host is None or not (self.root / host).is_file():
                continue
            try:
                text = (self.root / host).read_text()
            except (OSError, UnicodeDecodeError):
                continue
            for cmd in (c for line in text.splitlines() for c in split_shell(line)):
                pip = _PIP.match(cmd)
                if not pip or pip.group(1) != "install":
                    continue
                args = pip_args(_words(cmd)[_words(cmd).index("install") + 1 :])
                for spec in args.specs:
                    group = node_name(re.split(r"[=<>!~\[; ]", spec, maxsplit=1)[0])
                    d.runtime.setdefault(group, []).append(spec)
                    self.row(
                        ins,
                        f"{host}: {cmd}",
                        "runtime",
                        f'runtime = {{ {group} = ["{spec}"] }}: locked with the image, '
                        f"installed on first use; replace the script's pip line with "
                        f"`layerforge-runtime ensure {group}`",
                    )

    # -- COPY / ADD ---------------------------------------------------------------------------

    def copy_sources(self, ins: Instruction) -> tuple[list[str], str, dict[str, str]]:
        words = _words(ins.value)
        flags = {}
        rest = []
        for w in words:
            if w.startswith("--"):
                k, _, v = w[2:].partition("=")
                flags[k] = v
            else:
                rest.append(w)
        if len(rest) == 1 and exec_form(ins.value) is None:
            rest = [*rest, "."]
        parsed = exec_form(" ".join(rest)) if rest and rest[0].startswith("[") else None
        if parsed is not None:
            rest = list(parsed)
        return rest[:-1], rest[-1] if rest else ".", flags

    def copy_paths(
        self, d: Draft, ins: Instruction, paths: dict[str, str], workdir: str
    ) -> list[tuple[str, str]]:
        """Record where each copied host path lands; (host, image path) pairs."""
        sources, dest, flags = self.copy_sources(ins)
        if "from" in flags:
            return []
        written = dest
        dest = posixpath.join(workdir, dest)
        # a directory: DEST/, ., .., the working directory itself, or several sources
        is_dir = written.endswith("/") or posixpath.basename(written) in (".", "..")
        is_dir = is_dir or posixpath.normpath(dest) == posixpath.normpath(workdir)
        out: list[tuple[str, str]] = []
        for src in sources:
            host = rel(self.root, d.context / src)
            into_dir = is_dir or len(sources) > 1 or (self.root / host).is_dir()
            if (self.root / host).is_dir():
                target = dest.rstrip("/") or "/"
            elif into_dir:
                target = posixpath.join(dest, posixpath.basename(src))
            else:
                target = dest
            paths[posixpath.normpath(target)] = host
            out.append((host, posixpath.normpath(target)))
        return out

    def host_path(self, image_path: str, paths: dict[str, str], workdir: str) -> str | None:
        full = posixpath.normpath(posixpath.join(workdir, image_path))
        probe = full
        while True:
            if probe in paths:
                tail = posixpath.relpath(full, probe)
                return paths[probe] if tail == "." else posixpath.join(paths[probe], tail)
            if probe in ("/", ""):
                return None
            probe = posixpath.dirname(probe)

    def copy(
        self,
        d: Draft,
        ins: Instruction,
        paths: dict[str, str],
        workdir: str,
        later: str,
        built: dict[str, PipArgs],
    ) -> None:
        sources, dest, flags = self.copy_sources(ins)
        if "from" in flags:
            stage = built.get(flags["from"])
            if stage is None:
                self.missing(
                    ins,
                    ins.value,
                    f"copies from {flags['from']!r}, which is not a "
                    "build stage of this file: copy the files into the source instead",
                )
                return
            d.req_lines.extend(stage.files)
            self.row(
                ins,
                ins.value,
                "requirements",
                f"what stage {flags['from']!r} builds "
                "(its pip requirements) joins this image's requirements",
            )
            for src in sources:
                paths[posixpath.normpath(posixpath.join(workdir, dest))] = f"@stage:{src}"
            return
        if ins.name == "ADD" and any("://" in s for s in sources):
            for url in sources:
                target = posixpath.join(workdir, dest)
                if dest.endswith("/"):
                    target = posixpath.join(target, posixpath.basename(urlsplit(url).path))
                step = (
                    f'python3 -c "import urllib.request; urllib.request.urlretrieve('
                    f"'{url}', '{target}')\""
                )
                d.run.append(step)
                d.network_run = True
                self.row(
                    ins,
                    ins.value,
                    "kept-as-run",
                    "a run step that downloads it, with "
                    "network: NOT reproducible, the content is not in the build key; "
                    "vendor the file into the context instead",
                )
            return
        pairs = self.copy_paths(d, ins, paths, workdir)
        hosts = [h for h, _ in pairs]
        chown = " (ownership not kept: files are root-owned)" if "chown" in flags else ""
        if all(
            re.search(r"requirements|constraints|\.txt$|\.in$|pyproject\.toml$", h) for h in hosts
        ):
            self.row(
                ins,
                ins.value,
                "requirements",
                "a requirements file: read where pip installs it" + chown,
            )
            return
        used_later = [t for _, t in pairs if t in later or t.rstrip("/") + "/" in later]
        if (
            used_later
            and d.context_dir is None
            and len(pairs) == 1
            and (self.root / hosts[0]).is_dir()
        ):
            target = pairs[0][1]
            d.context_dir = hosts[0]
            d.context_target = target
            self.row(
                ins,
                ins.value,
                "context",
                f'context = "{hosts[0]}" (mounted read-only at '
                f"/context); each run step that uses it first copies it to {target} (run "
                "steps get a fresh /tmp)" + chown,
            )
            return
        self.app_copy(d, ins, pairs, workdir, chown)

    def app_copy(
        self, d: Draft, ins: Instruction, pairs: list[tuple[str, str]], workdir: str, chown: str
    ) -> None:
        if d.is_base:
            self.missing(
                ins,
                ins.value,
                "a base has no source: copy what run steps need "
                "through its context (a COPY used by a later RUN becomes one)",
            )
            return
        for host, target in pairs:
            if not (self.root / host).is_dir():
                if d.source is not None and host.startswith(d.source.rstrip("/") + "/"):
                    self.row(ins, ins.value, "source", f"already in source {d.source!r}")
                    continue
                self.missing(
                    ins,
                    ins.value,
                    f"copies the file {host} to {target}: source is "
                    "one directory; move the file into it (or its context)",
                )
                continue
            if d.source is None:
                d.source = host
                d.workdir = target
                self.row(
                    ins,
                    ins.value,
                    "source",
                    f'source = "{host}", workdir = "{target}" (its .dockerignore applies)' + chown,
                )
            elif host.startswith(d.source.rstrip("/") + "/") or host == d.source:
                self.row(ins, ins.value, "source", f"already in source {d.source!r}")
            else:
                self.missing(
                    ins,
                    ins.value,
                    f"a second application directory ({host}): "
                    f"source is one directory ({d.source!r}); move it under it",
                )

    # -- RUN commands ---------------------------------------------------------------------

    def run_command(
        self,
        d: Draft,
        ins: Instruction,
        cmd: str,
        paths: dict[str, str],
        workdir: str,
        built: dict[str, PipArgs],
    ) -> None:
        if re.match(r"^apt(-get)?\s+(-\S+\s+)*update\b", cmd):
            self.row(
                ins,
                cmd,
                "dropped",
                "apt index refresh: layerforge's system step does it, "
                "and its layer never holds apt lists",
            )
            return
        if _CACHE.match(cmd) or re.match(r"^rm\s+-\w*\s+/wheels?\b", cmd):
            self.row(
                ins,
                cmd,
                "dropped",
                "cache hygiene: layers never hold pip/apt caches, "
                "bytecode (unless compile_bytecode) or build-stage leftovers",
            )
            return
        if re.match(r"^(python3?(\.\d+)?\s+-m\s+venv|virtualenv)\s", cmd):
            self.row(
                ins,
                cmd,
                "dropped",
                "layerforge's images have their virtual environment "
                "at /opt/venv (PATH and VIRTUAL_ENV set)",
            )
            return
        if _APT_INSTALL.match(cmd):
            pkgs = apt_packages(cmd)
            d.system.extend(p for p in pkgs if p not in d.system)
            self.row(ins, cmd, "system", "system += " + ", ".join(pkgs))
            return
        pip = _PIP.match(cmd)
        if pip and pip.group(1) == "install":
            words = _words(cmd)
            args = pip_args(words[words.index("install") + 1 :])
            lines = self.pip_lines(d, ins, args, paths, workdir)
            d.req_lines.extend(lines)
            dropped = (
                f"; {' '.join(args.dropped)} dropped (uv keeps no cache)" if (args.dropped) else ""
            )
            self.row(
                ins,
                cmd,
                "requirements",
                (
                    "requirements += " + ", ".join(lines)
                    if lines
                    else "requirements (from the build stage)"
                )
                + dropped,
            )
            return
        if _PY_C.match(cmd):
            code = _words(cmd)[2] if len(_words(cmd)) > 2 else ""
            d.verify.append(code)
            self.row(ins, cmd, "verify", "a smoke test: verify runs it in the built image")
            return
        step = cmd if workdir == "/" else f"cd {workdir} && {cmd}"
        target = d.context_target
        if target is not None and target in cmd:
            step = f"mkdir -p {target} && cp -a /context/. {target}/ && {step}"
        d.run.append(step)
        self.row(
            ins,
            cmd,
            "run",
            "run step"
            + ("" if d.is_base else " (on the service's system base: services have no run steps)"),
        )

    def pip_lines(
        self, d: Draft, ins: Instruction, args: PipArgs, paths: dict[str, str], workdir: str
    ) -> list[str]:
        """Requirement lines (a spec, ``-r FILE`` or ``-c FILE``, FILE relative to the
        repository) for what one pip command installs."""
        out: list[str] = []
        for option, value in args.indexes:
            self.pip_indexes.append((option, value, f"{rel(self.root, ins.file)}:{ins.line}"))
        for kind, written in [("-r", f) for f in args.files] + [
            ("-c", f) for f in args.constraints
        ]:
            host = self.host_path(written, paths, workdir)
            if host is None or host.startswith("@stage:"):
                self.errors.append(
                    f"{rel(self.root, ins.file)}:{ins.line}: {written} was not "
                    "copied from the repository"
                )
                continue
            scan(self.root / host, self.pip)
            out.append(f"{kind} {host}")
        out.extend(args.specs)
        for path in args.paths:
            host = self.host_path(path.rstrip("*").rstrip("/"), paths, workdir)
            if host is not None and host.startswith("@stage:"):
                continue  # wheels of a build stage: already added by the COPY --from
            inside = self.host_path(posixpath.join(path, "pyproject.toml"), paths, workdir)
            project = None if inside is None else self.root / inside
            if project is None and host is not None:
                project = self.root / host / "pyproject.toml"
            if project is not None and project.is_file():
                out.append(f"-r {rel(self.root, project)}")
                self.pip.files.append(project)
                continue
            self.errors.append(
                f"{rel(self.root, ins.file)}:{ins.line}: pip installs {path}, "
                "which is not a requirements file or a project directory"
            )
        for value in args.editable:
            self.errors.append(
                f"{rel(self.root, ins.file)}:{ins.line}: editable install "
                f"{value}: make it the service's source instead"
            )
        return out


HEALTH_OPTIONS = {"--interval": "interval", "--timeout": "timeout",
                  "--start-period": "start_period", "--retries": "retries"}  # fmt: skip


def port_of(text: str) -> int | str:
    """``EXPOSE``'s ``8000``, ``8000/tcp`` or ``9000/udp`` as the manifest's ``expose``."""
    number, _, proto = text.partition("/")
    return int(number) if proto in ("", "tcp") and number.isdigit() else text


def healthcheck_of(value: str) -> dict[str, object] | bool | None:
    """A ``HEALTHCHECK`` instruction's arguments as the manifest's ``healthcheck``
    (``NONE``: false); None when they are not understood."""
    words = value.strip().split(None, 1)
    if words and words[0].upper() == "NONE":
        return False
    out: dict[str, object] = {}
    rest = value.strip()
    while rest.startswith("--"):
        option, _, rest = rest.partition(" ")
        name, _, arg = option.partition("=")
        if name not in HEALTH_OPTIONS or not arg:
            return None
        out[HEALTH_OPTIONS[name]] = int(arg) if name == "--retries" and arg.isdigit() else arg
        rest = rest.lstrip()
    head, _, command = rest.partition(" ")
    if head.upper() != "CMD" or not command.strip():
        return None
    command = command.strip()
    if command.startswith("["):
        try:
            argv = json.loads(command)
        except ValueError:
            return None
        if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)):
            return None
        out["command"] = argv
    else:
        out["command"] = command
    return {"command": out.pop("command"), **out}
