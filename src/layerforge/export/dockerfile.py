"""One Dockerfile per node, laid out like the best hand-written multi-stage setup.

Written to ``DIR/NODE/`` (default ``DIR`` = ``<project>/docker``); the build context of
every node is the project root::

    docker build -f docker/cpu/Dockerfile -t cpu:lf-<key12> .

- A base chains ``FROM ${PARENT_IMAGE}``, whose default is the parent's content-key tag
  (``NODE:lf-<key12>``, prefixed with ``project.registry``), so the bake file can link it to
  the parent target through ``contexts``.
- A root base starts from its OS source: a registry reference becomes ``FROM ref`` (pinned
  by the locked digest when the lock has one); a debootstrap or rootfs source cannot be
  pulled by Docker, so it becomes ``FROM scratch`` + ``ADD rootfs.tar.gz``, a tarball of the
  very root filesystem layerforge built from it (written next to the Dockerfile by
  :func:`layerforge.export.rootfs.write_rootfs`); an ``oci:`` layout becomes the build arg
  ``ROOT_IMAGE`` (the bake file points it at an ``oci-layout://`` context).
- The venv lives at /opt/venv (``VIRTUAL_ENV``, ``PATH``), as in our builder's images.
- The node's locked requirements (``name==version --hash=sha256:...``, from the lock) are
  bind-mounted and installed with ``--require-hashes --no-deps`` *before* any source, with
  BuildKit cache mounts for pip and apt; ``__pycache__`` is removed in the same ``RUN``.
- Runtime groups: their pins and the launcher are copied from ``DIR/NODE/runtime/`` (the
  same files as our builder's runtime layer, see :mod:`layerforge.export.runtime`); the
  wheels are not installed.
- A service ``COPY --link``s only its source tree, last, after every label and setting.
- ``Dockerfile.dockerignore`` (BuildKit reads it for this Dockerfile) lets only the node's
  own inputs into the context, and keeps the service's own ``.dockerignore`` rules.

The image config a Dockerfile builds equals the one our builder writes (Env, Entrypoint,
Cmd, WorkingDir, User, Labels; tests/integration/test_export_equivalence.py builds both):
values are literal (:mod:`layerforge.export.escape`), and a root base from an image drops
that image's Entrypoint and Cmd, as our builder keeps only its files and Env. Known
differences: the labels ``org.opencontainers.image.base.digest`` (the parent's manifest
digest, known only once it is built) and ``.revision`` (our builder's git commit) are not
written; the other config an OS image carries (labels, exposed ports, volumes) is inherited
by Docker but not by our builder; a value holding a newline cannot be exported.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path

from layerforge.builder import runtime_layer
from layerforge.export import nonroot as export_nonroot
from layerforge.export import runtime as export_runtime
from layerforge.export.common import (
    ExportContext,
    GeneratedFile,
    header,
    image_ref,
    inside,
)
from layerforge.export.escape import (
    dockerfile_copy,
    dockerfile_key,
    dockerfile_path,
    dockerfile_word,
)
from layerforge.manifest import Node, Project
from layerforge.oci.image import created_at
from layerforge.records import KEY_ANNOTATION, NODE_ANNOTATION
from layerforge.sourcetree import ALWAYS_IGNORED, STORE_DIR, IgnoreRules

VENV = "/opt/venv"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
REQUIREMENTS = "requirements.txt"
# Ids of the optional BuildKit secrets (pip settings, a CA bundle): names, not credentials.
PIP_CONF_SECRET = "pip.conf"  # noqa: S105
PIP_CA_SECRET = "pip-ca"  # noqa: S105
ROOTFS = "rootfs.tar.gz"
_REQ_MOUNT = "/tmp/layerforge/requirements.txt"  # noqa: S108 (a bind mount, not a temp file)
# Downloaded .debs are cached across builds; the package lists are not: `apt-get update`
# deletes files it does not know in /var/lib/apt/lists, and buildah keeps its cache-mount
# lock file inside the mounted directory (a cache mount there deadlocked buildah 1.28).
# The lists are fetched again (a few MB) and removed in the same RUN.
_APT_CACHE = "--mount=type=cache,target=/var/cache/apt,sharing=locked"
_APT_CLEAN = "rm -rf /var/lib/apt/lists/* /var/log/apt /var/log/dpkg.log /var/cache/debconf/*-old"
# layerforge takes an OS image's files and Env only (sources/base.py), as a Dockerfile
# does not: an inherited entrypoint script would run in front of every command.
_OS_IMAGE_RESET = [
    "# layerforge keeps only the OS image's files and Env: not its Entrypoint or Cmd.",
    "ENTRYPOINT []",
    "CMD []",
]
_PYCACHE_CLEAN = f"find {VENV} -depth -name __pycache__ -type d -exec rm -rf {{}} +"


@dataclass(frozen=True)
class NodePaths:
    """Context-relative (POSIX) paths of one node's generated files."""

    directory: str

    @property
    def dockerfile(self) -> str:
        return f"{self.directory}/Dockerfile"

    @property
    def requirements(self) -> str:
        return f"{self.directory}/{REQUIREMENTS}"

    @property
    def rootfs(self) -> str:
        return f"{self.directory}/{ROOTFS}"


def node_paths(ctx: ExportContext, node: str) -> NodePaths:
    base = inside(
        ctx.options.dockerfiles,
        ctx.project.root,
        "the Dockerfile directory",
        "write Dockerfiles inside the project (the build context is the project root)",
    )
    return NodePaths(f"{base}/{node}" if base != "." else node)


def needs_rootfs(node: Node) -> bool:
    return node.os_source is not None and node.os_source.kind in ("debootstrap", "rootfs")


# -- rendering -----------------------------------------------------------------------------


class DockerfileExporter:
    name = "dockerfiles"
    description = "one Dockerfile (+ .dockerignore, locked requirements) per node"

    def render(self, ctx: ExportContext) -> list[GeneratedFile]:
        out: list[GeneratedFile] = []
        directory = ctx.options.dockerfiles
        for name, node in ctx.project.nodes.items():
            out.append(GeneratedFile(directory / name / "Dockerfile", _text(dockerfile(ctx, node))))
            out.append(
                GeneratedFile(
                    directory / name / "Dockerfile.dockerignore", _text(dockerignore(ctx, node))
                )
            )
            if ctx.lock.nodes[name].packages:
                out.append(
                    GeneratedFile(directory / name / REQUIREMENTS, _text(requirements(ctx, node)))
                )
            out += export_runtime.files(ctx, node)  # runtime groups: pins and launcher
        if any(needs_rootfs(n) for n in ctx.project.nodes.values()):
            ignore = [*header(ctx, "dockerfiles"), f"/*/{ROOTFS}"]
            out.append(GeneratedFile(directory / ".gitignore", _text(ignore)))
        return out


def check_exportable(ctx: ExportContext) -> None:
    """Raise the UsageError of the first value a Dockerfile cannot carry (a newline)."""
    for node in ctx.project.nodes.values():
        _config(ctx, node)
        if node.source is not None:
            _copy_source(ctx, node)


def _text(lines: list[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def dockerfile(ctx: ExportContext, node: Node) -> list[str]:
    paths = node_paths(ctx, node.name)
    lines = ["# syntax=docker/dockerfile:1", *header(ctx, "dockerfiles")]
    lines += _usage(ctx, node, paths)
    lines += _from(ctx, node, paths)
    lines += export_nonroot.reset_lines(node)  # below a non-root base: RUN as root
    if node.kind == "base":
        lines += _system(ctx.project, node)
    lines += export_nonroot.user_run(node)  # the user layer: user, home, writable dirs
    if ctx.lock.nodes[node.name].packages:
        lines += _install(paths)
    lines += export_runtime.lines(ctx, node, paths.directory)
    lines += export_nonroot.config_lines(node)  # USER, EXPOSE, HEALTHCHECK
    lines += _config(ctx, node)
    if node.source is not None:
        lines += _copy_source(ctx, node)
    return lines


def _usage(ctx: ExportContext, node: Node, paths: NodePaths) -> list[str]:
    what = "service" if node.kind == "service" else "base"
    tag = image_ref(ctx, node.name) if node.kind == "base" else f"{node.name}:latest"
    return [
        f"# {what} {node.name!r} of project {ctx.project.name!r}; build it from the project root:",
        f"#   docker build -f {paths.dockerfile} -t {tag} .",
        "",
    ]


def _from(ctx: ExportContext, node: Node, paths: NodePaths) -> list[str]:
    if node.parent is not None:
        return [
            f"ARG PARENT_IMAGE={image_ref(ctx, node.parent)}",
            "FROM ${PARENT_IMAGE}",
            "",
        ]
    return [*_root_from(ctx, node, paths), "", *_venv(ctx, node)]


def _root_from(ctx: ExportContext, node: Node, paths: NodePaths) -> list[str]:
    source = node.os_source
    assert source is not None
    identity = ctx.lock.nodes[node.name].os_identity
    if source.kind == "registry":
        ref = source.spec
        digest = identity
        if "@" not in ref and digest and digest.startswith("sha256:"):
            ref = f"{ref}@{digest}"
        return [f"FROM {ref}", *_OS_IMAGE_RESET]
    if source.kind == "oci":
        return [
            f"# OS source {source.describe()}: a local OCI layout, which Docker cannot pull.",
            "# docker-bake.hcl points ROOT_IMAGE at it (an oci-layout:// context); with plain",
            "# `docker build`, load it first (e.g. skopeo copy to docker-daemon:) and pass",
            "# --build-arg ROOT_IMAGE=NAME:TAG.",
            "ARG ROOT_IMAGE=layerforge-root",
            "FROM ${ROOT_IMAGE}",
            *_OS_IMAGE_RESET,
        ]
    return [
        f"# OS source {source.describe()}: no registry image Docker could pull. Its root",
        "# filesystem, exactly as layerforge built it, is the tarball next to this file",
        f"# ({paths.rootfs}, written by `layerforge export dockerfiles`; not committed).",
        "FROM scratch",
        f"ADD {paths.rootfs} /",
    ]


def _venv(ctx: ExportContext, node: Node) -> list[str]:
    """Create /opt/venv with the image's own interpreter (pip comes with ensurepip)."""
    assert node.os_source is not None
    python = f"python{ctx.project.python}"
    path = "${PATH}" if node.os_source.kind in ("registry", "oci") else DEFAULT_PATH
    return [
        "# The venv our builder lays down, at the same place. Debian's python3 lacks ensurepip",
        "# until python3-venv is installed, hence the fallback.",
        f"RUN {_APT_CACHE} \\",
        f"    ({python} -m venv {VENV} 2>/dev/null \\",
        f"     || (rm -rf {VENV} && apt-get update \\",
        "         && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends"
        " python3-venv \\",
        f"         && {python} -m venv {VENV})) \\",
        f"    && {_APT_CLEAN} \\",
        f"    && {_PYCACHE_CLEAN}",
        f"ENV VIRTUAL_ENV={VENV} \\",
        f"    PATH={VENV}/bin:{path}",
        "",
    ]


def _system(project: Project, node: Node) -> list[str]:
    """System packages and run steps as ONE ``RUN``: one layer, as layerforge builds it, so
    that what a later step removes (build tools purged after compiling) is never shipped."""
    if not node.system and not node.run:
        return []
    flags: list[str] = []
    commands: list[str] = []
    if node.system:
        flags.append(_APT_CACHE)
        commands += [
            "apt-get update",
            "DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "
            + " ".join(sorted(node.system)),
        ]
    if not node.network:
        flags.insert(0, "--network=none")
    if node.context is not None and node.run:
        flags.append(f"--mount=type=bind,source={_context_rel(project, node)},target=/context")
    commands += [run_line(step) for step in node.run]
    if node.system:
        commands.append(_APT_CLEAN)
    head = f"RUN {' '.join(flags)} \\\n    " if flags else "RUN "
    return [
        f"# {node.section}: system packages and run steps in ONE RUN (one layer, as layerforge",
        "# builds it), each run step in a shell of its own as in layerforge's sandbox.",
        head + " \\\n    && ".join(commands),
        "",
    ]


def run_line(step: str) -> str:
    """A run step as ``sh -c`` of exactly its text (newlines kept: a multi-line step is
    rebuilt with printf, since a Dockerfile line cannot hold a newline)."""
    lines = [line for line in step.strip().splitlines() if line.strip()]
    if len(lines) == 1:
        return f"sh -c {shlex.quote(lines[0])}"
    quoted = " ".join(shlex.quote(line) for line in lines)
    return f"sh -c \"$(printf '%s\\n' {quoted})\""


def _install(paths: NodePaths) -> list[str]:
    return [
        f"# Locked requirements of this node ({paths.requirements}), before any source so",
        "# that Docker's cache holds: exact versions, checked against the lock's hashes.",
        "# A private index or proxy: --secret id=pip.conf,src=PIP.CONF (and id=pip-ca,src=CA.pem,",
        "# mounted at /run/secrets/pip-ca); neither lands in a layer.",
        "RUN --mount=type=cache,target=/root/.cache/pip \\",
        f"    --mount=type=secret,id={PIP_CONF_SECRET},target=/etc/pip.conf \\",
        f"    --mount=type=secret,id={PIP_CA_SECRET} \\",
        f"    --mount=type=bind,source={paths.requirements},target={_REQ_MOUNT} \\",
        f"    PYTHONDONTWRITEBYTECODE=1 {VENV}/bin/python -m pip install --no-deps "
        "--require-hashes \\",
        "        --only-binary=:all: --no-compile --disable-pip-version-check \\",
        f"        -r {_REQ_MOUNT} \\",
        f"    && {_PYCACHE_CLEAN}",
        "",
    ]


def _config(ctx: ExportContext, node: Node) -> list[str]:
    """ENV, WORKDIR, LABEL, ENTRYPOINT and CMD, every value literal (see export/escape)."""
    section = node.section
    env = [(k, v, f"{section}.env.{k}") for k, v in node.env]
    if node.source is not None and node.workdir:
        env = [("PYTHONPATH", node.workdir, f"{section}.workdir"), *env]
    lines: list[str] = []
    if env:
        lines.append("ENV " + " \\\n    ".join(f"{k}={dockerfile_word(v, w)}" for k, v, w in env))
    if node.workdir:
        lines.append(f"WORKDIR {dockerfile_path(node.workdir, f'{section}.workdir')}")
    labels = [
        f"{dockerfile_key(k, f'{section}.labels')}={dockerfile_word(v, f'{section}.labels.{k}')}"
        for k, v in image_labels(ctx, node)
    ]
    lines.append("LABEL " + " \\\n      ".join(labels))
    entrypoint = runtime_layer.entrypoint(node)  # the launcher where runtime groups are declared
    if entrypoint is not None:
        lines.append(f"ENTRYPOINT {json.dumps(entrypoint)}")
    if node.command is not None:
        lines.append(f"CMD {json.dumps(list(node.command))}")
    return [*lines, ""]


def image_labels(ctx: ExportContext, node: Node) -> list[tuple[str, str]]:
    """The labels our builder writes into the image config (minus the parent's digest,
    which only exists once the parent is built)."""
    out = {
        "org.opencontainers.image.created": created_at(ctx.project.source_date_epoch),
        "org.opencontainers.image.title": node.name,
    }
    if node.parent is not None:
        out["org.opencontainers.image.base.name"] = f"{node.parent}:{ctx.tag(node.parent)}"
    if ctx.project.version:
        out["org.opencontainers.image.version"] = ctx.project.version
    out.update(dict(node.labels))
    return sorted(out.items())


def image_annotations(ctx: ExportContext, node: Node) -> list[tuple[str, str]]:
    """The manifest annotations our builder writes (the bake file sets them)."""
    out = dict(image_labels(ctx, node))
    for key in list(out):
        if not key.startswith("org.opencontainers"):
            del out[key]
    out[KEY_ANNOTATION] = ctx.keys[node.name]
    out[NODE_ANNOTATION] = node.name
    return sorted(out.items())


def _copy_source(ctx: ExportContext, node: Node) -> list[str]:
    assert node.source is not None
    assert node.workdir is not None
    src = _source_rel(ctx.project, node)
    target = node.workdir.rstrip("/") + "/"
    return [
        "# The service's own code, alone in the last layer: a code change rebuilds only this.",
        f"COPY {'--link ' if ctx.options.copy_link else ''}"
        + dockerfile_copy([f"{src}/"], target, f"{node.section}.source"),
    ]


def _source_rel(project: Project, node: Node) -> str:
    assert node.source is not None
    return _project_rel(project, node.source, f"{node.section}.source")


def _context_rel(project: Project, node: Node) -> str:
    assert node.context is not None
    return _project_rel(project, node.context, f"{node.section}.context")


def _project_rel(project: Project, path: Path, key: str) -> str:
    """``path`` relative to the project root (the build context), or a usage error."""
    what = key.rsplit(".", 1)[-1]
    return inside(
        path,
        project.root,
        key,
        f"keep the {what} directory inside the project directory (the build context)",
    )


# -- requirements and ignore files -----------------------------------------------------------


def requirements(ctx: ExportContext, node: Node) -> list[str]:
    lines = [*header(ctx, "dockerfiles")]
    lines.append(f"# Locked distributions of {node.section}, for the image's Python.")
    if ctx.project.index_url:
        lines.append(f"--index-url {ctx.project.index_url}")
    lines += _named_indexes(ctx.project)
    for pkg in sorted(ctx.lock.nodes[node.name].packages):
        lines.append(f"{pkg.pin} \\")
        lines.append(f"    --hash=sha256:{pkg.sha256}")
    return lines


def _named_indexes(project: Project) -> list[str]:
    """pip has no per-package index: every named index is searched, and the hashes make
    sure each pin is the locked file. Credentials: the pip.conf secret or netrc."""
    lines = [f"--index-url {i.url}" for i in project.indexes if i.default]
    lines += [f"--extra-index-url {i.url}" for i in project.indexes if not i.default]
    return lines


def dockerignore(ctx: ExportContext, node: Node) -> list[str]:
    """Allow-list: the context holds only this node's inputs."""
    paths = node_paths(ctx, node.name)
    lines = [*header(ctx, "dockerfiles"), "**"]
    if ctx.lock.nodes[node.name].packages:
        lines.append(f"!{paths.requirements}")
    if needs_rootfs(node):
        lines.append(f"!{paths.rootfs}")
    lines += export_runtime.ignore(ctx, node, paths.directory)
    shipped: list[str] = []  # directories the context takes in whole
    if node.context is not None and node.run:
        shipped.append(_context_rel(ctx.project, node))
        lines.append(f"!{shipped[-1]}")
    if node.source is not None:
        src = _source_rel(ctx.project, node)
        shipped.append(src)
        lines.append(f"!{src}")
        for negated, pattern in IgnoreRules.load(node.source).rules:
            lines += _translate_ignore(src, pattern, negated)
    for directory in shipped:  # last: layerforge's store never ships (as in its own builds)
        lines += [f"{directory}/{STORE_DIR}", f"{directory}/**/{STORE_DIR}"]
    return lines


def _translate_ignore(prefix: str, pattern: str, negated: bool) -> list[str]:
    """A source-relative ignore rule as context-relative rule(s)."""
    bang = "!" if negated else ""
    pattern = pattern.removeprefix("**/") if pattern in ALWAYS_IGNORED else pattern
    out = [f"{bang}{prefix}/{pattern}"]
    if "/" not in pattern:
        out.append(f"{bang}{prefix}/**/{pattern}")
    return out
