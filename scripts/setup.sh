#!/usr/bin/env bash
# Set up a development machine: system tools (apt) and a virtualenv with layerforge.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
# Everything the suite runs (tests/unit/test_suite_guard.py checks this list against the tools
# the tests require): a missing tool fails its tests, it never skips them.
packages=(debootstrap bubblewrap skopeo umoci buildah docker-registry apache2-utils zstd chromium
  podman procps gzip tar mount util-linux git openssl shellcheck)
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
# Byte-compile our sources once: an editable install gets no .pyc otherwise when
# PYTHONDONTWRITEBYTECODE is set, and every run would compile ~40 modules (~50 ms).
.venv/bin/python -m compileall -q src >/dev/null
