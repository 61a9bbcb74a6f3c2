#!/usr/bin/env bash
# The whole test suite: lint, types, unit and integration tests (real tools, no mocks).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/lint-imports  # the layer contracts in pyproject.toml (docs/architecture.md)
.venv/bin/pytest -p no:cacheprovider "$@"
