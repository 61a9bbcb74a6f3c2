"""A GitHub Actions workflow that builds the fleet in dependency order, by content keys.

- ``plan``: ``layerforge plan --json`` gives every node's content-key tag (``lf-<key12>``).
- one job per base, ``needs`` its parent's job; the services as one matrix job that needs
  every base. Each job first asks the registry for ``NODE:lf-<key12>``: when it is there,
  nothing changed and the job does nothing else (only what changed is rebuilt).
- disk space shown before and after each build.
- builds with layerforge itself (``layerforge build --push NODE``; the registry is the
  remote cache) by default, or with ``docker buildx bake`` (``--builder bake``), each child
  FROM its parent's pushed content-key image.
"""

from __future__ import annotations

import json

from layerforge import __version__
from layerforge.errors import UsageError
from layerforge.export.common import (
    ExportContext,
    GeneratedFile,
    header,
    rel,
)
from layerforge.export.dockerfile import needs_rootfs
from layerforge.manifest import Node

RUNNER = "ubuntu-latest"
_CHECKOUT = "actions/checkout@v4"
_SETUP_PYTHON = "actions/setup-python@v5"
_LOGIN = "docker/login-action@v3"
_BUILDX = "docker/setup-buildx-action@v3"


class GithubExporter:
    name = "github"
    description = "a GitHub Actions workflow: bases in order, services as a matrix"

    def render(self, ctx: ExportContext) -> list[GeneratedFile]:
        text = "\n".join(workflow_lines(ctx)) + "\n"
        return [GeneratedFile(ctx.options.workflow, text.encode())]


def job_id(node: Node) -> str:
    return f"base-{node.name}".replace(".", "-")


def _q(value: str) -> str:
    return json.dumps(value)


def _registry_host(registry: str) -> str:
    first = registry.split("/", 1)[0]
    return first if ("." in first or ":" in first or first == "localhost") else "docker.io"


def workflow_lines(ctx: ExportContext) -> list[str]:
    project = ctx.project
    registry = project.registry
    if not registry:
        raise UsageError(
            f"{project.manifest}: project.registry is not set; the workflow pushes every "
            "image there and skips the nodes whose content-key tag it already holds",
            hint="add e.g. registry = 'ghcr.io/ORG' to [project]",
        )
    workdir = rel(project.root, ctx.options.repo_root)
    lines = [*header(ctx, "github")]
    lines += [
        "name: layerforge images",
        "",
        "on:",
        "  push:",
        "    branches: [main]",
        "  pull_request:",
        "  workflow_dispatch:",
        "",
        "permissions:",
        "  contents: read",
        "  packages: write",
        "",
        "concurrency:",
        "  group: layerforge-${{ github.ref }}",
        "  cancel-in-progress: true",
        "",
        "env:",
        f"  REGISTRY: {_q(registry)}",
        "  GIT_COMMIT: ${{ github.sha }}",
        "",
        "defaults:",
        "  run:",
        f"    working-directory: {_q(workdir)}",
        "",
        "jobs:",
        *_plan_job(ctx),
    ]
    for node in project.nodes.values():
        if node.kind == "base":
            lines += _base_job(ctx, node)
    lines += _services_job(ctx)
    return lines


def _install_layerforge() -> list[str]:
    return [
        f"      - uses: {_SETUP_PYTHON}",
        "        with:",
        '          python-version: "3.12"',
        "      - name: Install layerforge",
        f'        run: python -m pip install "layerforge=={__version__}"',
    ]


def _plan_job(ctx: ExportContext) -> list[str]:
    del ctx
    script = (
        'import json; d = json.load(open("plan.json")); '
        'print("tags=" + json.dumps({s["node"]: s["tag"] for s in d["steps"]}))'
    )
    return [
        "  plan:",
        f"    runs-on: {RUNNER}",
        "    outputs:",
        "      tags: ${{ steps.keys.outputs.tags }}",
        "    steps:",
        f"      - uses: {_CHECKOUT}",
        *_install_layerforge(),
        "      - name: Content keys of every node",
        "        id: keys",
        "        run: |",
        "          layerforge plan --json > plan.json",
        f'          python -c {_shell_quote(script)} >> "$GITHUB_OUTPUT"',
        "",
    ]


def _shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def _base_job(ctx: ExportContext, node: Node) -> list[str]:
    needs = ["plan"]
    parent_expr = None
    if node.parent is not None:
        needs.append(job_id(ctx.project.nodes[node.parent]))
        parent_expr = f"'{node.parent}'"
    lines = [
        f"  {job_id(node)}:",
        f"    name: base {node.name}",
        f"    needs: [{', '.join(needs)}]",
        f"    runs-on: {RUNNER}",
        "    env:",
        f"      NODE: {_q(node.name)}",
        f"      TAG: ${{{{ fromJSON(needs.plan.outputs.tags)['{node.name}'] }}}}",
    ]
    if parent_expr is not None:
        lines += [
            f"      PARENT: {_q(node.parent or '')}",
            f"      PARENT_TAG: ${{{{ fromJSON(needs.plan.outputs.tags)[{parent_expr}] }}}}",
        ]
    lines += ["    steps:", *_build_steps(ctx, root=node.parent is None and needs_rootfs(node))]
    return [*lines, ""]


def _services_job(ctx: ExportContext) -> list[str]:
    services = [n for n in ctx.project.nodes.values() if n.kind == "service"]
    if not services:
        return []
    bases = [job_id(n) for n in ctx.project.nodes.values() if n.kind == "base"]
    lines = [
        "  services:",
        "    name: service ${{ matrix.node }}",
        f"    needs: [{', '.join(['plan', *bases])}]",
        f"    runs-on: {RUNNER}",
        "    strategy:",
        "      fail-fast: false",
        "      matrix:",
        "        include:",
    ]
    for svc in services:
        lines.append(f"          - {{ node: {_q(svc.name)}, parent: {_q(svc.parent or '')} }}")
    lines += [
        "    env:",
        "      NODE: ${{ matrix.node }}",
        "      TAG: ${{ fromJSON(needs.plan.outputs.tags)[matrix.node] }}",
        "      PARENT: ${{ matrix.parent }}",
        "      PARENT_TAG: ${{ fromJSON(needs.plan.outputs.tags)[matrix.parent] }}",
        "    steps:",
        *_build_steps(ctx, root=False),
    ]
    return [*lines, ""]


def _build_steps(ctx: ExportContext, *, root: bool) -> list[str]:
    todo = "steps.check.outputs.hit != 'true'"
    host = _registry_host(ctx.project.registry or "")
    login = [
        f"      - uses: {_LOGIN}",
        "        with:",
        f"          registry: {_q(host)}",
        "          username: ${{ secrets.REGISTRY_USERNAME }}",
        "          password: ${{ secrets.REGISTRY_PASSWORD }}",
    ]
    lines = [
        f"      - uses: {_CHECKOUT}",
        "      - name: Disk space before",
        "        run: df -h /",
        *login,
        "      - name: Already built? (the content-key tag is in the registry)",
        "        id: check",
        "        run: |",
        '          if docker manifest inspect "$REGISTRY/$NODE:$TAG" > /dev/null 2>&1; then',
        '            echo "hit=true" >> "$GITHUB_OUTPUT"',
        '            echo "$NODE:$TAG is in the registry: nothing to build"',
        "          else",
        '            echo "hit=false" >> "$GITHUB_OUTPUT"',
        "          fi",
    ]
    if ctx.options.builder == "bake":
        lines += _bake_steps(todo, root=root)
    else:
        lines += _layerforge_steps(todo)
    lines += [
        "      - name: Disk space after",
        "        if: always()",
        "        run: df -h /",
    ]
    return lines


def _indent_if(steps: list[str], condition: str) -> list[str]:
    """Add ``if: condition`` to every step in ``steps`` (each begins with '      - ')."""
    out: list[str] = []
    for line in steps:
        out.append(line)
        if line.startswith("      - "):
            out.append(f"        if: {condition}")
    return out


def _layerforge_steps(todo: str) -> list[str]:
    steps = [
        *_install_layerforge(),
        "      - name: Build and push with layerforge (the registry is the remote cache)",
        '        run: layerforge build --push "$NODE"',
    ]
    return _indent_if(steps, todo)


def _bake_steps(todo: str, *, root: bool) -> list[str]:
    rootfs = "" if root else " --no-rootfs"
    steps = [
        *_install_layerforge(),
        "      - name: Write the Dockerfiles and the bake file",
        "        run: |",
        f"          layerforge export dockerfiles{rootfs}",
        "          layerforge export bake",
        f"      - uses: {_BUILDX}",
        "      - name: Build and push with docker buildx bake",
        "        run: |",
        '          set -- --push "$NODE"',
        '          if [ -n "${PARENT:-}" ]; then',
        '            parent="docker-image://$REGISTRY/$PARENT:$PARENT_TAG"',
        '            set -- --set "$NODE.contexts.parent=$parent" "$@"',
        "          fi",
        '          docker buildx bake "$@"',
    ]
    return _indent_if(steps, todo)
