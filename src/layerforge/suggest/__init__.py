"""``layerforge suggest``: alternative base hierarchies of a built fleet, scored in bytes
stored and pulled (docs/suggest.md)."""
