"""``docker-bake.hcl``: one target per node, children linked to their parent's target.

Run from the project root (paths are relative to it)::

    docker buildx bake                   # every node, bases before the services on them
    docker buildx bake services --push   # a group

- Each child sets ``PARENT_IMAGE = "parent"`` and ``contexts = { parent = "target:P" }``:
  BuildKit builds the parent target first and uses its result as the child's ``FROM``.
  To build a child on a parent that is already pushed (CI, by content key), override it:
  ``--set ml.contexts.parent=docker-image://REGISTRY/cpu:lf-<key12>``.
- Groups: ``default`` (everything), ``bases``, ``services``, and ``tierN`` (bases N levels
  below an OS source; services are in the tier below their base).
- Tags as our pushes use them: ``lf-<key12>``, ``latest``, the project version, and the git
  commit (12 hex, as our pushes) when ``GIT_COMMIT`` is set
  (``GIT_COMMIT=$(git rev-parse HEAD) docker buildx bake``).
- Registry cache: ``cache-from``/``cache-to`` ``type=registry`` at
  ``${CACHE_REGISTRY}/NODE:buildcache`` (``mode=max``); ``CACHE_REGISTRY`` defaults to
  ``project.registry`` and the cache is off when it is empty.
- Attestations: every target asks BuildKit for an SBOM and for provenance (``attest``, as
  layerforge's own builds attach a CycloneDX SBOM to every image).
"""

from __future__ import annotations

import json

from layerforge.export.common import (
    ExportContext,
    GeneratedFile,
    depth,
    header,
    image_name,
    push_tags,
    rel,
)
from layerforge.export.dockerfile import check_exportable, image_annotations, node_paths
from layerforge.export.escape import hcl_string
from layerforge.manifest import Node

PARENT_CONTEXT = "parent"
# BuildKit's SBOM and provenance attestations, attached to every image the bake file builds
ATTESTATIONS = ("type=sbom", "type=provenance,mode=max")
ROOT_CONTEXT = "layerforge-root"


class BakeExporter:
    name = "bake"
    description = "docker-bake.hcl: one target per node, linked through contexts"

    def render(self, ctx: ExportContext) -> list[GeneratedFile]:
        check_exportable(ctx)  # what the Dockerfiles cannot carry, the bake file cannot build
        text = "\n".join(bake_lines(ctx)) + "\n"
        return [GeneratedFile(ctx.options.bake_file, text.encode())]


def _q(value: str) -> str:
    """A literal string: nothing from the manifest interpolates (export/escape)."""
    return hcl_string(value)


def _template(literal: str, interpolation: str) -> str:
    """``literal`` (escaped) followed by one of our deliberate interpolations."""
    return _q(literal)[:-1] + interpolation + '"'


def _list(values: list[str], indent: str = "  ") -> list[str]:
    return ["[", *[f"{indent}  {_q(v)}," for v in values], f"{indent}]"]


def bake_lines(ctx: ExportContext) -> list[str]:
    lines = [*header(ctx, "bake"), "#", "# Run `docker buildx bake` from the project root.", ""]
    lines += [
        'variable "GIT_COMMIT" {',
        '  default = ""',
        "}",
        "",
        'variable "CACHE_REGISTRY" {',
        f"  default = {_q(ctx.project.registry or '')}",
        "}",
        "",
    ]
    lines += _groups(ctx)
    lines += [
        'target "_layerforge" {',
        '  context = "."',
        f"  platforms = {_inline(list(ctx.project.platforms))}",
        f"  attest = {_inline(list(ATTESTATIONS))}",
        "}",
        "",
    ]
    for node in ctx.project.nodes.values():
        lines += _target(ctx, node)
    return lines


def _inline(values: list[str]) -> str:
    return "[" + ", ".join(_q(v) for v in values) + "]"


def tiers(ctx: ExportContext) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for node in ctx.project.nodes.values():
        out.setdefault(depth(ctx.project, node), []).append(node.name)
    return dict(sorted(out.items()))


def _groups(ctx: ExportContext) -> list[str]:
    nodes = ctx.project.nodes.values()
    groups = {
        "default": [n.name for n in nodes],
        "bases": [n.name for n in nodes if n.kind == "base"],
        "services": [n.name for n in nodes if n.kind == "service"],
    }
    for level, names in tiers(ctx).items():
        groups[f"tier{level}"] = names
    lines: list[str] = []
    for name, targets in groups.items():
        lines += [f"group {_q(name)} {{", f"  targets = {_inline(targets)}", "}", ""]
    return lines


def _target(ctx: ExportContext, node: Node) -> list[str]:
    paths = node_paths(ctx, node.name)
    tags = push_tags(ctx, node.name)
    commit = _template(f"{image_name(ctx.project, node.name)}:", "${substr(GIT_COMMIT, 0, 12)}")
    cache = "${CACHE_REGISTRY}/" + node.name + ":buildcache"  # node names need no escaping
    cache_from = json.dumps(f"type=registry,ref={cache}")  # templates on purpose
    cache_to = json.dumps(f"type=registry,ref={cache},mode=max")
    lines = [
        f"target {_q(node.name)} {{",
        '  inherits = ["_layerforge"]',
        f"  dockerfile = {_q(paths.dockerfile)}",
        f'  tags = concat({_inline(tags)}, GIT_COMMIT == "" ? [] : [{commit}])',
        "  annotations = "
        + "\n".join(_list([f"{k}={v}" for k, v in image_annotations(ctx, node)])),
        f'  cache-from = CACHE_REGISTRY == "" ? [] : [{cache_from}]',
        f'  cache-to = CACHE_REGISTRY == "" ? [] : [{cache_to}]',
    ]
    lines += _links(ctx, node)
    return [*lines, "}", ""]


def _links(ctx: ExportContext, node: Node) -> list[str]:
    if node.parent is not None:
        return [
            f"  args = {{ PARENT_IMAGE = {_q(PARENT_CONTEXT)} }}",
            f"  contexts = {{ {PARENT_CONTEXT} = {_q('target:' + node.parent)} }}",
        ]
    source = node.os_source
    if source is not None and source.kind == "oci" and source.path is not None:
        layout = rel(source.path, ctx.project.root)
        ref = f"oci-layout://{layout}" + (f":{source.tag}" if source.tag else "")
        return [
            f"  args = {{ ROOT_IMAGE = {_q(ROOT_CONTEXT)} }}",
            f"  contexts = {{ {_q(ROOT_CONTEXT)} = {_q(ref)} }}",
        ]
    return []
