"""OCI image layout store, media types, and (later) registry client."""
