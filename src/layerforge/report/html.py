"""The HTML report: one self-contained page (inline CSS and SVG, no script, no fetch).

Sections: the fleet totals and the before/after table; stacked layer bars per image
(coloured by the node that added each layer); the base tree with the bytes each base
shares; the largest distributions; then per image its layers, waste and budget.
"""

from __future__ import annotations

from html import escape
from typing import Any

from layerforge.report.audithtml import audit_section
from layerforge.report.fleet import FleetReport
from layerforge.report.sizes import ImageReport, LayerReport, describe_layer
from layerforge.sizes import format_size

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1",
           "#ff9da7", "#9c755f", "#bab0ac")  # fmt: skip
CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em} h2{margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6em 0} td,th{padding:.25em .7em;border-bottom:1px solid #eee;
text-align:left} td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.totals{display:flex;gap:1em;flex-wrap:wrap}.card{border:1px solid #ddd;border-radius:6px;
padding:.6em 1em;min-width:11em}.card b{display:block;font-size:1.4em}.bad{color:#c0392b}
.good{color:#2e7d32} .muted{color:#777} svg text{font:12px system-ui,sans-serif}
"""


def _colors(report: FleetReport) -> dict[str, str]:
    return {img.node: PALETTE[i % len(PALETTE)] for i, img in enumerate(report.images)}


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "-"


def _totals(r: FleetReport) -> str:
    cards = [
        ("Stored, layered (unique blobs)", r.stored, ""),
        ("Pulled for all services, layered", r.pull_all, ""),
        ("Pulled for all services, naive", r.naive_all, "muted"),
        ("Saved by sharing (pull)", r.saving_pulled, "good" if r.saving_pulled >= 0 else "bad"),
    ]
    body = "".join(
        f'<div class="card"><span class="{cls}">{escape(label)}</span>'
        f"<b>{format_size(value)}</b></div>"
        for label, value, cls in cards
    )
    return f'<div class="totals">{body}</div>'


def _before_after(r: FleetReport) -> str:
    rows = "".join(
        f"<tr><td>{escape(s)}</td><td class=n>{format_size(r.naive[s])}</td>"
        f"<td class=n>{format_size(r.pulls[s])}</td></tr>"
        for s in r.services
    )
    rows += (
        f"<tr><th>all services (a fresh node pulls)</th><th class=n>{format_size(r.naive_all)}</th>"
        f"<th class=n>{format_size(r.pull_all)}</th></tr>"
        f"<tr><th>stored in the registry</th><th class=n>{format_size(r.naive_all)}</th>"
        f"<th class=n>{format_size(r.stored)}</th></tr>"
    )
    saving = (
        f"<p>Sharing saves <b>{format_size(r.saving_pulled)}</b> "
        f"({_pct(r.saving_pulled, r.naive_all)}) of what a node running every service pulls, "
        f"and <b>{format_size(r.saving_stored)}</b> of what is stored.</p>"
    )
    head = (
        "<tr><th>service</th><th class=n>naive: one image, nothing shared</th>"
        "<th class=n>layered: what was built</th></tr>"
    )
    return f"<table>{head}{rows}</table>{saving}"


def _bar_segments(img: ImageReport, colors: dict[str, str], scale: float, y: int) -> str:
    x = 160.0
    out = []
    for layer in img.layers:
        width = max(layer.size * scale, 1.0)
        opacity = "0.55" if layer.inherited else "1"
        tip = f"{layer.owner}: {describe_layer(layer)} — {format_size(layer.size)}"
        out.append(
            f'<rect x="{x:.1f}" y="{y}" width="{width:.1f}" height="18"'
            f' fill="{colors[layer.owner]}" fill-opacity="{opacity}" stroke="#fff">'
            f"<title>{escape(tip)}</title></rect>"
        )
        x += width
    out.append(f'<text x="{x + 6:.1f}" y="{y + 13}">{format_size(img.size)}</text>')
    return "".join(out)


def _layer_bars(r: FleetReport, colors: dict[str, str]) -> str:
    biggest = max((i.size for i in r.images), default=1) or 1
    scale = 760 / biggest
    rows = []
    for n, img in enumerate(r.images):
        y = 10 + n * 26
        rows.append(f'<text x="0" y="{y + 13}">{escape(img.node)}</text>')
        rows.append(_bar_segments(img, colors, scale, y))
    legend = " ".join(
        f'<span style="color:{c}">■</span> {escape(node)}' for node, c in colors.items()
    )
    height = 20 + 26 * len(r.images)
    return (
        f'<svg width="1000" height="{height}" role="img" aria-label="layers per image">'
        f"{''.join(rows)}</svg><p class=muted>Each bar is one image, each segment one layer "
        f"(compressed), coloured by the node that added it; faded segments are inherited "
        f"from a base and shared. {legend}</p>"
    )


def _tree_order(r: FleetReport) -> list[tuple[ImageReport, int]]:
    present = {i.node: i for i in r.images}
    children: dict[str | None, list[ImageReport]] = {}
    for img in r.images:
        parent = img.parent if img.parent in present else None
        children.setdefault(parent, []).append(img)
    out: list[tuple[ImageReport, int]] = []

    def walk(parent: str | None, depth: int) -> None:
        for img in children.get(parent, []):
            out.append((img, depth))
            walk(img.node, depth + 1)

    walk(None, 0)
    return out


def _shared(r: FleetReport, img: ImageReport) -> tuple[int, int]:
    """(images built on ``img``'s own layers besides itself, bytes those layers save)."""
    own = {x.digest for x in img.layers if not x.inherited}
    users = [i for i in r.images if i.node != img.node and own <= {x.digest for x in i.layers}]
    return len(users), len(users) * img.own


def _base_tree(r: FleetReport, colors: dict[str, str]) -> str:
    rows = []
    order = _tree_order(r)
    where: dict[str, tuple[int, int]] = {}
    for n, (img, depth) in enumerate(order):
        x, y = 10 + depth * 40, 10 + n * 46
        where[img.node] = (x, y)
        users, saved = _shared(r, img)
        text = f"own {format_size(img.own)}, total {format_size(img.size)}"
        if users:
            text += f" · shared by {users} images · saves {format_size(saved)}"
        color = colors[img.node]
        rows.append(
            f'<rect x="{x}" y="{y}" width="520" height="36" rx="5" fill="{color}"'
            f' fill-opacity="0.15" stroke="{color}"/>'
            f'<text x="{x + 8}" y="{y + 15}" font-weight="bold">{escape(img.node)}'
            f' <tspan font-weight="normal">({escape(img.kind)})</tspan></text>'
            f'<text x="{x + 8}" y="{y + 30}">{escape(text)}</text>'
        )
        if img.parent in where:
            px, py = where[img.parent]
            rows.append(
                f'<path d="M{px + 16} {py + 36} V{y + 18} H{x}" fill="none" stroke="#999"/>'
            )
    height = 20 + 46 * len(order)
    return (
        f'<svg width="1000" height="{height}" role="img" aria-label="base tree">{"".join(rows)}'
        "</svg><p class=muted>Each box is an image; <i>own</i> is what it adds to its base, "
        "<i>shared by</i> how many images reuse those layers, <i>saves</i> the bytes that "
        "reuse avoids storing again.</p>"
    )


def _dists(r: FleetReport) -> str:
    if not r.dists:
        return "<p class=muted>No dependency layers.</p>"
    biggest = r.dists[0].size or 1
    rows = []
    for n, d in enumerate(r.dists):
        y = 6 + n * 22
        width = max(d.size * 560 / biggest, 1)
        label = f"{d.name} {d.version}"
        rows.append(
            f'<text x="0" y="{y + 12}">{escape(label)}</text>'
            f'<rect x="220" y="{y}" width="{width:.1f}" height="16" fill="#4e79a7">'
            f"<title>{escape(', '.join(d.images))}</title></rect>"
            f'<text x="{220 + width + 6:.1f}" y="{y + 12}">{format_size(d.size)} · in '
            f"{len(d.images)} images</text>"
        )
    return (
        f'<svg width="1000" height="{12 + 22 * len(r.dists)}" role="img" '
        f'aria-label="largest distributions">{"".join(rows)}</svg>'
        "<p class=muted>Installed size of each distribution.</p>"
    )


def _layer_row(x: LayerReport) -> str:
    where = "inherited" if x.inherited else "own"
    return (
        f"<tr><td>{escape(x.owner)}</td><td>{escape(x.kind)}</td><td>{where}</td>"
        f"<td class=n>{format_size(x.size)}</td><td class=n>{format_size(x.uncompressed)}</td>"
        f"<td>{escape(describe_layer(x))}</td></tr>"
    )


def _image_section(img: ImageReport) -> str:
    budget = ""
    if img.max_size is not None:
        cls, verdict = ("bad", "over budget") if img.over_budget else ("good", "within budget")
        budget = f' · max_size {format_size(img.max_size)}: <span class="{cls}">{verdict}</span>'
    waste = "no bytes hidden by a higher layer"
    if img.waste.total:
        files = ", ".join(escape(i.path) for i in img.waste.items[:5])
        waste = f'<span class="bad">{format_size(img.waste.total)} hidden</span>: {files}'
    head = (
        "<tr><th>added by</th><th>kind</th><th></th><th class=n>compressed</th>"
        "<th class=n>uncompressed</th><th>holds</th></tr>"
    )
    return (
        f"<h3>{escape(img.node)}</h3><p>{format_size(img.size)} compressed, "
        f"{format_size(img.uncompressed)} uncompressed; inherited {format_size(img.inherited)},"
        f" own {format_size(img.own)}{budget}. Waste: {waste}.</p>"
        f"<table>{head}{''.join(_layer_row(x) for x in img.layers)}</table>"
    )


def render(
    report: FleetReport, title: str | None = None, audit: dict[str, Any] | None = None
) -> str:
    colors = _colors(report)
    heading = escape(title or f"{report.project}: image sizes and sharing")
    breaches = report.breaches
    alert = ""
    if breaches:
        names = ", ".join(escape(b.node) for b in breaches)
        alert = f'<p class="bad"><b>Over budget:</b> {names}</p>'
    parts: list[Any] = [
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{heading}</title>",
        f"<style>{CSS}</style></head><body><h1>{heading}</h1>{alert}",
        "<p class=muted>Container images built as a hierarchy of shared base images. "
        "<i>Layered</i> is what was built: images share their bases' layers, so a layer is "
        "stored and pulled once. <i>Naive</i> is the same services built the usual way, one "
        "self-contained image each. Sizes are compressed bytes (what is stored and pulled) "
        "unless marked uncompressed.</p>",
        _totals(report),
        "<h2>Before and after</h2>",
        _before_after(report),
        "<h2>Layers per image</h2>",
        _layer_bars(report, colors),
        "<h2>Base tree and shared bytes</h2>",
        _base_tree(report, colors),
        "<h2>Largest distributions</h2>",
        _dists(report),
        audit_section(audit) if audit is not None else "",
        "<h2>Images</h2>",
        *(_image_section(img) for img in report.images),
        "</body></html>\n",
    ]
    return "".join(parts)
