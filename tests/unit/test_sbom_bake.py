"""Item 2 of issue 16: the exported bake file asks BuildKit for SBOM and provenance
attestations, in the target every node's target inherits."""

from __future__ import annotations

from pathlib import Path

from tests.unit.test_export import fleet_context, parse_bake, rendered


def test_bake_requests_attestations(example_copy: Path) -> None:
    ctx = fleet_context(example_copy)
    doc = parse_bake(rendered(ctx, "bake")["docker-bake.hcl"])
    assert doc["target"]["_layerforge"]["attest"] == ["type=sbom", "type=provenance,mode=max"]
    for name in ctx.project.nodes:
        assert doc["target"][name]["inherits"] == ["_layerforge"]
