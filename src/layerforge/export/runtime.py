"""Runtime groups in the exported Dockerfiles: the same pins and launcher as our builder's
runtime layer, copied from ``DIR/NODE/runtime/`` (written next to the Dockerfile), plus the
launcher as ENTRYPOINT where a group is declared. The wheels are not installed."""

from __future__ import annotations

from layerforge.builder.runtime_layer import MODULE, PINS_DIR, SCRIPT, layer_for
from layerforge.export.common import ExportContext, GeneratedFile
from layerforge.manifest import Node

RUNTIME = "runtime"


def _entries(ctx: ExportContext, node: Node) -> dict[str, tuple[bytes, int]]:
    """Files of the runtime layer, by their path in the export directory's runtime/."""
    out: dict[str, tuple[bytes, int]] = {}
    entries, _label = layer_for(ctx.lock, ctx.project, node.name, ctx.project.python)
    for entry in entries:
        if entry.kind != "file" or entry.data is None:
            continue
        if entry.path.startswith(PINS_DIR + "/"):
            out["pins/" + entry.path.removeprefix(PINS_DIR + "/")] = (entry.data, entry.mode)
        elif f"/{MODULE}/" in entry.path:
            out[MODULE + "/" + entry.path.rsplit("/", 1)[-1]] = (entry.data, entry.mode)
        else:
            out[entry.path.rsplit("/", 1)[-1]] = (entry.data, entry.mode)
    return out


def files(ctx: ExportContext, node: Node) -> list[GeneratedFile]:
    directory = ctx.options.dockerfiles / node.name / RUNTIME
    return [
        GeneratedFile(directory / rel, data, mode)
        for rel, (data, mode) in sorted(_entries(ctx, node).items())
    ]


def lines(ctx: ExportContext, node: Node, directory: str) -> list[str]:
    """COPY instructions of the runtime layer's files, by name (a file a removed group left
    behind in the directory is never copied); none when the layer has no files."""
    written = sorted(_entries(ctx, node))
    if not written:
        return []
    src = f"{directory}/{RUNTIME}"
    names = ", ".join(g.name for g in ctx.lock.nodes[node.name].runtime)
    pins = [f"{src}/{rel}" for rel in written if rel.startswith("pins/")]
    out = [
        f"# Runtime groups ({names}): locked, NOT installed. `layerforge-runtime ensure GROUP`",
        "# (or LAYERFORGE_RUNTIME_GROUPS with the ENTRYPOINT) installs them on first use.",
        f"COPY {' '.join(pins)} /{PINS_DIR}/",
    ]
    package = [f"{src}/{rel}" for rel in written if rel.startswith(f"{MODULE}/")]
    if package:
        site = f"/opt/venv/lib/python{ctx.project.python}/site-packages/{MODULE}/"
        script = SCRIPT.rsplit("/", 1)
        out.append(f"COPY {' '.join(package)} {site}")
        out.append(f"COPY {src}/{script[1]} /{script[0]}/")
    return [*out, ""]


def ignore(ctx: ExportContext, node: Node, directory: str) -> list[str]:
    """Allow-list entries: exactly the files :func:`lines` copies."""
    return [f"!{directory}/{RUNTIME}/{rel}" for rel in sorted(_entries(ctx, node))]
