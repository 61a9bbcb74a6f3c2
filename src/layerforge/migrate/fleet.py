"""A whole repository: find its Dockerfiles and compose files, match ``FROM`` tags to the
repository's own Dockerfiles, map each one (:mod:`layerforge.migrate.mapping`) and lay the
result out as bases and services."""

from __future__ import annotations

import tomllib
from pathlib import Path
from urllib.parse import urlsplit

from layerforge.errors import UsageError
from layerforge.migrate import compose as compose_files
from layerforge.migrate.compose import ComposeService
from layerforge.migrate.dockerfile import DockerfileDoc, parse
from layerforge.migrate.mapping import (
    Draft,
    Mapper,
    Migration,
    OsMode,
    Row,
    node_name,
    rel,
    repo_of,
)

SKIP_DIRS = {".git", ".layerforge", "node_modules", ".venv", "venv", "__pycache__", ".tox"}


def find_files(root: Path) -> tuple[list[Path], list[Path]]:
    """(Dockerfiles, compose files) under ``root``, in a stable order."""
    dockerfiles: list[Path] = []
    composes: list[Path] = []
    for path in sorted(root.rglob("*")):
        if any(part in SKIP_DIRS for part in path.relative_to(root).parts) or not path.is_file():
            continue
        name = path.name
        if name == "Dockerfile" or name.startswith("Dockerfile.") or name.endswith(".Dockerfile"):
            dockerfiles.append(path.resolve())
        elif name.startswith(("docker-compose", "compose")) and name.endswith((".yml", ".yaml")):
            composes.append(path.resolve())
    return dockerfiles, composes


def draft_name(root: Path, dockerfile: Path) -> str:
    name = dockerfile.name
    if name.startswith("Dockerfile."):
        return node_name(name.removeprefix("Dockerfile."))
    if name.endswith(".Dockerfile"):
        return node_name(name.removesuffix(".Dockerfile"))
    parent = dockerfile.parent
    return node_name(parent.name if parent != root else root.name)


def match_tags(
    root: Path, dockerfiles: list[Path], services: list[ComposeService], given: dict[str, Path]
) -> tuple[dict[str, Path], dict[str, str]]:
    """image repository -> Dockerfile, and the rule that matched each one (compose
    ``image:``, ``--tag``, or the directory's name)."""
    tags: dict[str, Path] = {}
    rules: dict[str, str] = {}
    for svc in services:
        if svc.image and svc.dockerfile is not None and svc.dockerfile in dockerfiles:
            tags[repo_of(svc.image)] = svc.dockerfile
            rules[repo_of(svc.image)] = f"compose {rel(root, svc.file)}: services.{svc.name}.image"
    for ref, path in given.items():
        target = path if path.is_file() else path / "Dockerfile"
        tags[repo_of(ref)] = target.resolve()
        rules[repo_of(ref)] = f"--tag {ref}={rel(root, path)}"
    return tags, rules


def guess_tag(root: Path, ref: str, dockerfiles: list[Path]) -> tuple[Path | None, str]:
    last = repo_of(ref).rsplit("/", 1)[-1]
    for path in dockerfiles:
        directory = path.parent.relative_to(root).as_posix()
        if last == directory.replace("/", "-"):
            return path, f"the directory {directory}/ joined by '-'"
    for path in dockerfiles:
        if last == path.parent.name or last == draft_name(root, path):
            return path, f"the directory name {path.parent.name}"
    return None, ""


def _drafts(
    root: Path, dockerfiles: list[Path], services: list[ComposeService]
) -> dict[Path, Draft]:
    by_file: dict[Path, list[ComposeService]] = {}
    for svc in services:
        if svc.dockerfile is not None:
            by_file.setdefault(svc.dockerfile, []).append(svc)
    names: set[str] = set()
    drafts: dict[Path, Draft] = {}
    for path in dockerfiles:
        users = by_file.get(path, [])
        doc = parse(path, {k: v for svc in users for k, v in svc.args.items()})
        context = users[0].context if users and users[0].context else path.parent
        if not _context_holds(doc, context) and _context_holds(doc, root):
            context = root  # `docker build -f DIR/Dockerfile .` from the repository's root
        name = draft_name(root, path)
        if name in names:
            name = node_name(path.parent.relative_to(root).as_posix().replace("/", "-"))
        names.add(name)
        drafts[path] = Draft(name, doc, context, doc.final.ref, services=users)
    return drafts


def map_fleet(root: Path, os_mode: OsMode, given_tags: dict[str, Path]) -> Migration:
    root = root.resolve()
    dockerfiles, composes = find_files(root)
    if not dockerfiles:
        raise UsageError(
            f"no Dockerfile under {root}",
            hint="pass the repository that holds your Dockerfiles to --from",
        )
    services: list[ComposeService] = []
    for path in composes:
        services.extend(compose_files.read(path))
    tags, rules = match_tags(root, dockerfiles, services, given_tags)
    drafts = _drafts(root, dockerfiles, services)
    mapper = Mapper(root, os_mode, tags)
    for draft in drafts.values():  # guessed tags, for FROMs nothing else matched
        ref = repo_of(draft.parent_ref)
        if ref not in tags:
            guessed, rule = guess_tag(root, draft.parent_ref, dockerfiles)
            if guessed is not None and guessed != draft.doc.path:
                tags[ref], rules[ref] = guessed, rule
    mapper.tags = tags
    mapper.tag_rules = rules
    parents = {
        tags[repo_of(d.parent_ref)] for d in drafts.values() if repo_of(d.parent_ref) in tags
    }
    for path, draft in drafts.items():
        draft.is_base = path in parents
        mapper.resolve_from(draft, draft.doc.final.instructions[0], drafts)
        mapper.map_doc(draft)
    for svc in services:
        mapper.rows.extend(_compose_rows(root, svc, drafts))
    migration = Migration(
        root=root,
        python="3.11",
        drafts={d.name: d for d in drafts.values()},
        rows=mapper.rows,
        indexes=[],
        default_index=None,
        find_links=[],
        generated={},
        errors=mapper.errors,
    )
    _python(migration)
    _indexes(migration, mapper)
    _notes(migration, mapper)
    hoist(migration)
    return migration


def _notes(m: Migration, mapper: Mapper) -> None:
    for path, line, text, why in mapper.pip.problems:
        m.errors.append(
            f"{rel(m.root, path)}:{line}: {text}: {why}, which layerforge.toml cannot hold"
        )
    if mapper.pip.hashes:
        m.notes.append(
            f"{mapper.pip.hashes} requirement line(s) carry --hash options: read and dropped, "
            "layerforge.lock pins the sha256 of every wheel itself"
        )
    if any(d.source == "." for d in m.drafts.values()):
        m.notes.append(
            "a service's source is the repository itself: add layerforge.toml, layerforge.lock "
            "and layerforge-migration.md to its .dockerignore, or they ship in its app layer"
        )


def hoist(m: Migration) -> None:
    """A requirement every service of a base installs (the same line, in each Dockerfile)
    moves up into the base: one copy stored, the same bytes pulled by each service. It
    dominates the Dockerfiles' structure, so it is applied, and the report says so."""
    for base in m.drafts.values():
        children = [d for d in m.drafts.values() if d.parent == base.name]
        if not base.is_base or len(children) < 2 or any(d.is_base for d in children):
            continue
        if any(len(d.services) > 1 for d in children):
            continue
        common = [
            line
            for line in children[0].req_lines
            if not line.startswith("-") and all(line in d.req_lines for d in children[1:])
        ]
        for line in common:
            for child in children:
                child.req_lines.remove(line)
            base.req_lines.append(line)
            names = ", ".join(c.name for c in children)
            m.applied.append(
                f"moved {line} up into {base.name}: every service of it installs it ({names})"
            )


def _context_holds(doc: DockerfileDoc, context: Path) -> bool:
    """Whether every COPY source of the final stage exists under ``context``."""
    for ins in doc.final.instructions:
        if ins.name in ("COPY", "ADD") and "--from" not in ins.value and "://" not in ins.value:
            words = [w for w in ins.value.split() if not w.startswith("--")]
            if any(not (context / w).exists() for w in words[:-1]):
                return False
    return True


def _compose_rows(root: Path, svc: ComposeService, drafts: dict[Path, Draft]) -> list[Row]:
    file = rel(root, svc.file)
    key = f"services.{svc.name}"
    if svc.dockerfile is None or svc.dockerfile not in drafts:
        return [
            Row(
                file,
                0,
                "compose",
                key,
                "dropped",
                f"image {svc.image!r} is not built from this repository: left to compose",
            )
        ]
    draft = drafts[svc.dockerfile]
    rows = [
        Row(
            file,
            0,
            "compose",
            f"{key}.build",
            "service",
            f"[services.{node_name(svc.name)}] from {rel(root, svc.dockerfile)}",
        )
    ]
    for what, value in (("command", svc.command), ("entrypoint", svc.entrypoint)):
        if value is not None:
            rows.append(
                Row(
                    file,
                    0,
                    "compose",
                    f"{key}.{what}",
                    what,
                    f"{what} overrides the "
                    f"Dockerfile's: {list(value) if isinstance(value, tuple) else value}",
                )
            )
    if svc.environment:
        rows.append(
            Row(
                file,
                0,
                "compose",
                f"{key}.environment",
                "env",
                "env: " + ", ".join(sorted(svc.environment)),
            )
        )
    if svc.ports:
        rows.append(
            Row(
                file,
                0,
                "compose",
                f"{key}.ports",
                "expose",
                f"set expose = "
                f"{list(svc.ports)} in [services.{node_name(svc.name)}]; written as a "
                "comment",
            )
        )
    if svc.user:
        rows.append(Row(file, 0, "compose", f"{key}.user", "user", f'set user = "{svc.user}"'))
    if svc.healthcheck:
        rows.append(
            Row(
                file,
                0,
                "compose",
                f"{key}.healthcheck",
                "healthcheck",
                "set healthcheck; written as a comment",
            )
        )
    if svc.args:
        rows.append(
            Row(
                file,
                0,
                "compose",
                f"{key}.build.args",
                "arg",
                "build arguments override the ARG defaults: "
                + ", ".join(f"{k}={v}" for k, v in sorted(svc.args.items())),
            )
        )
    del draft
    return rows


def _python(m: Migration) -> None:
    found = {d.python for d in m.drafts.values() if d.python}
    if len(found) > 1:
        m.errors.append(
            f"the root images use different Pythons ({', '.join(sorted(found))}): "
            "a project has one python; the others are set to the first"
        )
    if found:
        m.python = sorted(found)[0]


def _index_name(url: str, taken: set[str]) -> str:
    host = urlsplit(url).hostname or "index"
    base = node_name(host.split(".")[0] if host.count(".") >= 1 else host)
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    taken.add(name)
    return name


def _indexes(m: Migration, mapper: Mapper) -> None:
    options = [*((o, v, f"{rel(m.root, f)}:{n}") for o, v, f, n in mapper.pip.indexes)]
    options += mapper.pip_indexes
    default: str | None = None
    extras: list[str] = []
    for option, value, where in options:
        if option == "--index-url":
            if default is not None and default.rstrip("/") != value.rstrip("/"):
                m.errors.append(
                    f"{where}: --index-url {value}, but another file says "
                    f"{default}: a project has one default index"
                )
                continue
            default = value
        elif option == "--extra-index-url":
            if value.rstrip("/") not in {e.rstrip("/") for e in extras}:
                extras.append(value)
        else:
            path = _find_links_path(m.root, value, where)
            if path is None:
                m.errors.append(
                    f"{where}: --find-links {value} is not a directory of this repository"
                )
            elif path not in m.find_links:
                m.find_links.append(path)
    taken: set[str] = set()
    m.indexes = [(_index_name(u, taken), u) for u in extras]
    if default is not None:
        m.default_index = _index_name(default, taken)
        m.indexes.append((m.default_index, default))


def _find_links_path(root: Path, value: str, where: str) -> str | None:
    file = root / where.rsplit(":", 1)[0]
    for base in (file.parent, root):
        candidate = (base / value).resolve()
        if candidate.is_dir() and candidate.is_relative_to(root):
            return rel(root, candidate)
    return None


def pyproject_lines(path: Path) -> list[str]:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return []
    deps = data.get("project", {}).get("dependencies", [])
    return [str(d) for d in deps] if isinstance(deps, list) else []
