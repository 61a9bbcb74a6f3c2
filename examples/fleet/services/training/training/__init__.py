"""A training job on the gpu base (CPU-sized stand-in)."""
