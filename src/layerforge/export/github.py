"""A GitHub Actions workflow that builds the fleet in dependency order, by content keys.

- ``plan``: ``layerforge plan --json`` gives every node's content-key tag (``lf-<key12>``),
  and whether this run publishes: only a push to the default branch or a tag does
  (``publish``); a pull request builds and verifies, and pushes nothing.
- one job per base, ``needs`` its parent's job; the services as one matrix job that needs
  every base. Each job comes twice: for pull requests (read-only token, no push) and for
  publishing (``packages: write``, ``build --push``), as GitHub cannot vary a job's
  permissions by event. Each job first asks the registry for ``NODE:lf-<key12>``: when it
  is there, nothing changed and the job does nothing else (only what changed is rebuilt).
- safe to merge as it is: actions pinned by commit, no permissions at the top and the least
  each job needs, checkouts that keep no credentials, a concurrency group that never cancels
  a publish halfway; GHCR is reached with ``GITHUB_TOKEN``, another registry with the
  ``REGISTRY_USERNAME``/``REGISTRY_PASSWORD`` secrets.
- builds with layerforge itself (``layerforge build NODE``, as root, with debootstrap and
  bubblewrap installed; the registry is the remote cache) by default, or with ``docker
  buildx bake`` (``--builder bake``), each child FROM its parent's pushed content-key image.
- disk space shown before and after each build.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

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
PUBLISH = "needs.plan.outputs.publish == 'true'"
SUDO = 'sudo -E env "PATH=$PATH"'  # root for debootstrap and the sandbox; pip's layerforge
APT = "sudo apt-get install -y -q --no-install-recommends debootstrap bubblewrap"


@dataclass(frozen=True)
class Action:
    """An action pinned by the full commit of a release tag (a tag can be moved)."""

    repo: str
    commit: str
    version: str

    def uses(self) -> str:
        return f"{self.repo}@{self.commit} # {self.version}"


# Commits of the release tags (checked against the actions' repositories: `git rev-parse
# TAG^{commit}`); the newest majors, which run on node24. Check again when moving.
CHECKOUT = Action("actions/checkout", "3d3c42e5aac5ba805825da76410c181273ba90b1", "v7.0.1")
SETUP_PYTHON = Action("actions/setup-python", "5fda3b95a4ea91299a34e894583c3862153e4b97", "v7.0.0")
SETUP_BUILDX = Action(
    "docker/setup-buildx-action", "37fe631027851001ddb9b187196cc803df7f5f0e", "v4.3.0"
)


class GithubExporter:
    name = "github"
    description = "a GitHub Actions workflow: bases in order, services as a matrix"

    def render(self, ctx: ExportContext) -> list[GeneratedFile]:
        text = "\n".join(workflow_lines(ctx)) + "\n"
        return [GeneratedFile(ctx.options.workflow, text.encode())]


def job_id(node: Node, *, publish: bool = True) -> str:
    return f"base-{node.name}".replace(".", "-") + ("" if publish else "-pr")


def default_install() -> str:
    """What the workflow installs unless ``export github --install`` says otherwise."""
    return f"layerforge=={__version__}"


def _q(value: str) -> str:
    return json.dumps(value)


def _registry_host(registry: str) -> str:
    first = registry.split("/", 1)[0]
    return first if ("." in first or ":" in first or first == "localhost") else "docker.io"


def _ghcr(ctx: ExportContext) -> bool:
    return _registry_host(ctx.project.registry or "") == "ghcr.io"


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
        "    tags: ['v*']",
        "  pull_request:",
        "  workflow_dispatch:",
        "",
        "# Nothing at the top: each job asks for what it needs.",
        "permissions: {}",
        "",
        "concurrency:",
        "  group: layerforge-${{ github.ref }}",
        "  # a newer push to a pull request cancels its checks; a publish always finishes",
        "  cancel-in-progress: ${{ github.event_name == 'pull_request' }}",
        "",
        "env:",
        f"  REGISTRY: {_q(registry)}",
        f"  REGISTRY_HOST: {_q(_registry_host(registry))}",
        "  GIT_COMMIT: ${{ github.sha }}",
        f"  LAYERFORGE_SPEC: {_q(ctx.options.install or default_install())}",
        "",
        "defaults:",
        "  run:",
        f"    working-directory: {_q(workdir)}",
        "",
        "jobs:",
        *_plan_job(),
    ]
    for publish in (False, True):
        for node in project.nodes.values():
            if node.kind == "base":
                lines += _base_job(ctx, node, publish=publish)
        lines += _services_job(ctx, publish=publish)
    return lines


def _checkout() -> list[str]:
    return [
        f"      - uses: {CHECKOUT.uses()}",
        "        with:",
        "          persist-credentials: false",
    ]


def _install_layerforge() -> list[str]:
    return [
        f"      - uses: {SETUP_PYTHON.uses()}",
        "        with:",
        '          python-version: "3.12"',
        "      - name: Install layerforge",
        '        run: python -m pip install "$LAYERFORGE_SPEC"',
    ]


def _plan_job() -> list[str]:
    script = (
        'import json; d = json.load(open("plan.json")); '
        'print("tags=" + json.dumps({s["node"]: s["tag"] for s in d["steps"]}))'
    )
    publish = (
        "${{ github.event_name != 'pull_request' && (github.ref == format('refs/heads/{0}', "
        "github.event.repository.default_branch) || startsWith(github.ref, 'refs/tags/')) }}"
    )
    return [
        "  plan:",
        f"    runs-on: {RUNNER}",
        "    permissions:",
        "      contents: read",
        "    outputs:",
        "      tags: ${{ steps.keys.outputs.tags }}",
        "      publish: ${{ steps.keys.outputs.publish }}",
        "    steps:",
        *_checkout(),
        *_install_layerforge(),
        "      - name: Content keys of every node; publish only from the default branch or a tag",
        "        id: keys",
        "        env:",
        f"          PUBLISH: {publish}",
        "        run: |",
        "          layerforge plan --json --no-remote-cache > plan.json",
        f'          python -c {_shell_quote(script)} >> "$GITHUB_OUTPUT"',
        '          echo "publish=$PUBLISH" >> "$GITHUB_OUTPUT"',
        "",
    ]


def _shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def _job_head(ctx: ExportContext, *, publish: bool) -> list[str]:
    """``if``, runner and permissions of a build job: packages: write only to publish."""
    lines = [
        f"    if: {PUBLISH if publish else PUBLISH.replace('==', '!=')}",
        f"    runs-on: {RUNNER}",
        "    permissions:",
        "      contents: read",
    ]
    if _ghcr(ctx):  # GITHUB_TOKEN reaches GHCR with the packages permission
        lines.append(f"      packages: {'write' if publish else 'read'}")
    return lines


def _base_job(ctx: ExportContext, node: Node, *, publish: bool) -> list[str]:
    needs = ["plan"]
    parent_expr = None
    if node.parent is not None:
        needs.append(job_id(ctx.project.nodes[node.parent], publish=publish))
        parent_expr = f"'{node.parent}'"
    what = "publish" if publish else "pull request"
    lines = [
        f"  {job_id(node, publish=publish)}:",
        f"    name: base {node.name} ({what})",
        f"    needs: [{', '.join(needs)}]",
        *_job_head(ctx, publish=publish),
        "    env:",
        f"      NODE: {_q(node.name)}",
        f"      TAG: ${{{{ fromJSON(needs.plan.outputs.tags)['{node.name}'] }}}}",
    ]
    if parent_expr is not None:
        lines += [
            f"      PARENT: {_q(node.parent or '')}",
            f"      PARENT_TAG: ${{{{ fromJSON(needs.plan.outputs.tags)[{parent_expr}] }}}}",
        ]
    root = node.parent is None and needs_rootfs(node)
    lines += ["    steps:", *_build_steps(ctx, root=root, publish=publish)]
    return [*lines, ""]


def _services_job(ctx: ExportContext, *, publish: bool) -> list[str]:
    services = [n for n in ctx.project.nodes.values() if n.kind == "service"]
    if not services:
        return []
    bases = [job_id(n, publish=publish) for n in ctx.project.nodes.values() if n.kind == "base"]
    what = "publish" if publish else "pull request"
    lines = [
        f"  services{'' if publish else '-pr'}:",
        f"    name: service ${{{{ matrix.node }}}} ({what})",
        f"    needs: [{', '.join(['plan', *bases])}]",
        *_job_head(ctx, publish=publish),
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
        *_build_steps(ctx, root=False, publish=publish),
    ]
    return [*lines, ""]


def _login(ctx: ExportContext, *, publish: bool, tool: str) -> list[str]:
    """Log ``tool`` (layerforge, as root, or docker) in to the registry. GHCR: GITHUB_TOKEN.
    Elsewhere: the two secrets, which a pull request from a fork does not get; it then
    builds without the remote cache (and for bake, without the registry's build cache)."""
    command = (
        f'{SUDO} layerforge login "$REGISTRY_HOST"'
        if tool == "layerforge"
        else 'docker login "$REGISTRY_HOST"'
    )
    if _ghcr(ctx):
        env = [
            "          USERNAME: ${{ github.actor }}",
            "          PASSWORD: ${{ secrets.GITHUB_TOKEN }}",
        ]
        what = "ghcr.io with GITHUB_TOKEN"
    else:
        env = [
            "          USERNAME: ${{ secrets.REGISTRY_USERNAME }}",
            "          PASSWORD: ${{ secrets.REGISTRY_PASSWORD }}",
        ]
        what = "the registry (REGISTRY_USERNAME, REGISTRY_PASSWORD secrets)"
    login = f'printf \'%s\' "$PASSWORD" | {command} -u "$USERNAME" --password-stdin'
    lines = [
        f"      - name: Log in to {what}",
        "        id: login",
        "        env:",
        *env,
        "        run: |",
    ]
    if publish or _ghcr(ctx):
        return [
            *lines,
            f"          {login}",
            '          echo "cache=--remote-cache" >> "$GITHUB_OUTPUT"',
        ]
    return [
        *lines,
        '          if [ -n "$PASSWORD" ]; then',
        f"            {login}",
        '            echo "cache=--remote-cache" >> "$GITHUB_OUTPUT"',
        "          else",
        '            echo "no registry credentials (a pull request from a fork): no remote cache"',
        '            echo "cache=--no-remote-cache" >> "$GITHUB_OUTPUT"',
        "          fi",
    ]


def _build_steps(ctx: ExportContext, *, root: bool, publish: bool) -> list[str]:
    bake = ctx.options.builder == "bake"
    lines = [
        *_checkout(),
        *_install_layerforge(),
        *_login(ctx, publish=publish, tool="docker" if bake else "layerforge"),
        "      - name: Disk space before",
        "        run: df -h /",
        *(_check_docker() if bake else _check_layerforge()),
    ]
    steps = _bake_steps(root=root, publish=publish) if bake else _layerforge_steps(publish)
    lines += _indent_if(steps, "steps.check.outputs.hit != 'true'")
    lines += [
        "      - name: Disk space after",
        "        if: always()",
        "        run: df -h /",
    ]
    return lines


def _check_layerforge() -> list[str]:
    script = (
        "import json, os, sys; d = json.load(sys.stdin); "
        's = [x for x in d["steps"] if x["node"] == os.environ["NODE"]]; '
        'print("hit=" + str(bool(s) and s[0]["status"] == "remote").lower())'
    )
    return [
        "      - name: Already built? (the content-key tag is in the registry)",
        "        id: check",
        "        env:",
        "          REMOTE_CACHE: ${{ steps.login.outputs.cache }}",
        "        run: |",
        f'          {SUDO} layerforge plan "$REMOTE_CACHE" --json "$NODE" \\',
        f'            | python -c {_shell_quote(script)} >> "$GITHUB_OUTPUT"',
    ]


def _check_docker() -> list[str]:
    return [
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


def _indent_if(steps: list[str], condition: str) -> list[str]:
    """Add ``if: condition`` to every step in ``steps`` (each begins with '      - ')."""
    out: list[str] = []
    for line in steps:
        out.append(line)
        if line.startswith("      - "):
            out.append(f"        if: {condition}")
    return out


def _install_tools() -> list[str]:
    return [
        "      - name: Install what the build runs (debootstrap, bubblewrap)",
        "        run: |",
        "          sudo apt-get update -q",
        f"          {APT}",
    ]


def _layerforge_steps(publish: bool) -> list[str]:
    if publish:
        build = [
            "      - name: Build, verify and push with layerforge (registry as remote cache)",
            f'        run: {SUDO} layerforge build --push "$NODE"',
        ]
    else:
        build = [
            "      - name: Build and verify with layerforge (a pull request pushes nothing)",
            "        env:",
            "          REMOTE_CACHE: ${{ steps.login.outputs.cache }}",
            f'        run: {SUDO} layerforge build "$REMOTE_CACHE" "$NODE"',
        ]
    return [*_install_tools(), *build]


def _bake_steps(*, root: bool, publish: bool) -> list[str]:
    rootfs = "" if root else " --no-rootfs"
    steps = [*_install_tools()] if root else []
    steps += [
        "      - name: Write the Dockerfiles and the bake file",
        "        run: |",
        f"          {SUDO + ' ' if root else ''}layerforge export dockerfiles{rootfs}",
        "          layerforge export bake",
        f"      - uses: {SETUP_BUILDX.uses()}",
    ]
    if publish:
        steps += [
            "      - name: Build and push with docker buildx bake",
            "        run: |",
            '          set -- --push "$NODE"',
            '          if [ -n "${PARENT:-}" ]; then',
            '            parent="docker-image://$REGISTRY/$PARENT:$PARENT_TAG"',
            '            set -- --set "$NODE.contexts.parent=$parent" "$@"',
            "          fi",
            '          docker buildx bake "$@"',
        ]
    else:  # parents from their targets (a changed parent is not pushed); no output, no cache
        steps += [
            "      - name: Build with docker buildx bake (a pull request pushes nothing)",
            "        run: |",
            '          docker buildx bake --set "*.output=type=cacheonly" \\',
            '            --set "*.cache-to=type=local,dest=$RUNNER_TEMP/buildcache" "$NODE"',
        ]
    return steps
