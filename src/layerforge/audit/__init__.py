"""layerforge audit: vulnerabilities (OSV), unused requirements and licenses of a fleet."""
