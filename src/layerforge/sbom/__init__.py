"""Software bills of materials of built images (CycloneDX), kept as OCI artifacts."""
