"""A nightly batch job on the ml base, with one extra requirement of its own."""
