"""A small HTTP API on the cpu base."""
