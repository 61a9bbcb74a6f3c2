"""Two Dockerfile repositories for ``layerforge init --from`` (issue 15), written by the tests:

- :func:`tiered_fleet` (fixture A): a cpu base compiling a C library from its context, an ml
  base and a gpu base chained by ``FROM`` tags (one through an ``ARG``), two-stage service
  Dockerfiles (a ``pip wheel`` stage, a ``--prefix`` builder with build tools), a service
  with apt packages of its own, ``USER``/``EXPOSE``/``HEALTHCHECK``, and a compose file;
- :func:`universal_worker` (fixture B): one worker image with staged requirements files
  (``-r`` chains, ``--hash`` continuations, ``--find-links``), an entrypoint script that
  pip-installs a heavy library at start, and two compose services running it with different
  commands.

Their requirements name tiny wheels (tests/wheelkit.py) in ``wheels/`` and, for the gpu base,
a PEP 503 index on disk (``--extra-index-url file://...``), so ``lock`` runs offline."""

from __future__ import annotations

from pathlib import Path

from tests.wheelkit import make_index, make_wheel

TAG = "py3-none-any"


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _wheels(root: Path, names: list[tuple[str, str]]) -> None:
    for name, version in names:
        make_wheel(root / "wheels", name, version, tag=TAG)


FASTMATH_C = "int fm_add(int a, int b) { return a + b; }\n"
MAKEFILE = "install:\n\tgcc -O2 -fPIC -shared -o /usr/local/lib/libfastmath.so fastmath.c\n"

CPU = """\
# the cpu base: a C library compiled from source, and the shared requirements
ARG PY=3.11
FROM python:${PY}-slim-bookworm
LABEL org.opencontainers.image.vendor="acme"
ENV LANG=C.UTF-8 PIP_NO_CACHE_DIR=1
RUN apt-get update \\
    && apt-get install -y --no-install-recommends gcc libc6-dev make \\
    && rm -rf /var/lib/apt/lists/*
COPY native/ /tmp/native/
RUN make -C /tmp/native install && ldconfig
COPY requirements/cpu.txt /tmp/requirements.txt
COPY constraints.txt /tmp/constraints.txt
RUN pip install --no-cache-dir -r /tmp/requirements.txt -c /tmp/constraints.txt \\
    && find /usr/local -name __pycache__ -prune -exec rm -rf {} + \\
    && rm -rf /root/.cache/pip
RUN python -c "import ctypes; assert ctypes.CDLL('libfastmath.so').fm_add(2, 3) == 5"
RUN useradd --create-home app
"""

ML = """\
ARG BASE_TAG=1.4.0
FROM acme/base-cpu:${BASE_TAG}
COPY requirements/ml.txt /tmp/ml.txt
RUN pip install -r /tmp/ml.txt && find / -name '*.pyc' -delete
"""

GPU = """\
FROM acme/base-ml:1.4.0
ENV GPU_KIND=cuda
RUN pip install --extra-index-url {index} gpukit==1.0 \\
    ; python -c "import gpukit; print(gpukit.VERSION)"
"""

API = """\
FROM python:3.11-bookworm AS build
COPY services/api/requirements.txt /tmp/req.txt
RUN pip wheel --wheel-dir /wheels -r /tmp/req.txt
FROM acme/base-cpu:1.4.0
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/* && rm -rf /wheels
WORKDIR /app
COPY --chown=app:app services/api/app/ /app/
USER app
EXPOSE 8000
HEALTHCHECK --interval=10s CMD python -c "import urllib.request as u; u.urlopen('http://[::1]:80/')"
CMD ["python", "-m", "api"]
"""

SEARCH = """\
FROM python:3.11-bookworm AS builder
RUN apt-get update && apt-get install -y build-essential
COPY services/search/requirements.txt /req.txt
RUN pip install --prefix=/install -r /req.txt
FROM acme/base-ml:1.4.0
ARG EXTRA=0.9.0
COPY --from=builder /install /usr/local
RUN pip install searchextra==${EXTRA}
WORKDIR /srv
COPY services/search/src /srv
ENTRYPOINT ["python", "-m", "search"]
"""

TRAIN = """\
FROM acme/base-gpu:1.4.0
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 \\
    && rm -rf /var/lib/apt/lists/*
COPY services/train/pyproject.toml /app/pyproject.toml
COPY services/train/src /app
WORKDIR /app
RUN pip install . && find /app -name '*.pyc' -delete
CMD python -m train --epochs 1
"""

COMPOSE_A = """\
services:
  api:
    build:
      context: .
      dockerfile: services/api/Dockerfile
    image: acme/api:1.0
    ports: ["8000:8000"]
    environment:
      LOG_LEVEL: info
  search:
    build:
      context: .
      dockerfile: services/search/Dockerfile
      args:
        EXTRA: "1.0.0"
    image: acme/search:1.0
    command: ["python", "-m", "search", "--port", "9000"]
  train:
    build:
      context: .
      dockerfile: services/train/Dockerfile
  cache:
    image: redis:7
"""


def tiered_fleet(root: Path) -> Path:
    """Fixture A under ``root`` (returned)."""
    index_wheels = root.parent / f"{root.name}-index"
    gpukit = make_wheel(index_wheels, "gpukit", "1.0", tag=TAG)
    index = make_index(index_wheels, [gpukit])
    _write(
        root,
        {
            "base/cpu/Dockerfile": CPU,
            "base/ml/Dockerfile": ML,
            "base/gpu/Dockerfile": GPU.format(index=index.as_uri()),
            "services/api/Dockerfile": API,
            "services/search/Dockerfile": SEARCH,
            "services/train/Dockerfile": TRAIN,
            "compose.yaml": COMPOSE_A,
            "native/fastmath.c": FASTMATH_C,
            "native/Makefile": MAKEFILE,
            "constraints.txt": "numlike<2\n",
            "requirements/cpu.txt": "--find-links ../wheels\n"
            f"numlike==1.0 \\\n    --hash=sha256:{'0' * 64}\n",
            "requirements/ml.txt": "-r cpu.txt\nmlpkg==1.0  # the model kit\n",
            "services/api/requirements.txt": "apipkg==1.0\n",
            "services/api/app/api/__init__.py": "",
            "services/api/app/api/__main__.py": "import apipkg\nprint('api', apipkg.VERSION)\n",
            "services/search/requirements.txt": "searchpkg>=1\n",
            "services/search/src/search/__init__.py": "",
            "services/search/src/search/__main__.py": "import searchpkg\nprint('search')\n",
            "services/train/pyproject.toml": '[project]\nname = "train"\nversion = "0.1"\n'
            'dependencies = ["trainpkg==1.0"]\n',
            "services/train/src/train/__init__.py": "",
            "services/train/src/train/__main__.py": "import trainpkg, gpukit\nprint('train')\n",
        },
    )
    _wheels(
        root,
        [
            ("numlike", "1.0"),
            ("mlpkg", "1.0"),
            ("apipkg", "1.0"),
            ("searchpkg", "1.2"),
            ("searchextra", "1.0.0"),
            ("searchextra", "0.9.0"),
            ("trainpkg", "1.0"),
        ],
    )
    return root


WORKER = """\
FROM python:3.11-slim-bookworm
ENV PYTHONUNBUFFERED=1
WORKDIR /srv
COPY requirements/ /srv/requirements/
RUN pip install -r requirements/worker.txt
COPY worker/ /srv/
ENTRYPOINT ["/srv/entrypoint.sh"]
CMD ["python", "-m", "worker", "cpu"]
"""

COMPOSE_B = """\
services:
  worker-cpu:
    build:
      context: .
      dockerfile: worker/Dockerfile
    image: acme/worker:latest
    command: ["python", "-m", "worker", "cpu"]
  worker-gpu:
    build:
      context: .
      dockerfile: worker/Dockerfile
    image: acme/worker:latest
    command: ["python", "-m", "worker", "gpu"]
    environment:
      - DEVICE=cuda
"""


def universal_worker(root: Path) -> Path:
    """Fixture B under ``root`` (returned)."""
    _write(
        root,
        {
            "worker/Dockerfile": WORKER,
            "compose.yml": COMPOSE_B,
            "requirements/base.txt": "basepkg==1.0\n",
            "requirements/ml.txt": "-r base.txt\nmlpkg==1.0 \\\n    --hash=sha256:00\n",
            "requirements/worker.txt": "-r ml.txt\n--find-links ../wheels\nworkerpkg>=1\n",
            "worker/entrypoint.sh": '#!/bin/sh\nset -e\npip install heavylib==2.0\nexec "$@"\n',
            "worker/worker/__init__.py": "",
            "worker/worker/__main__.py": "import sys, workerpkg\nprint('worker', sys.argv[1])\n",
        },
    )
    (root / "worker/entrypoint.sh").chmod(0o755)
    _wheels(root, [("basepkg", "1.0"), ("mlpkg", "1.0"), ("workerpkg", "1.1"), ("heavylib", "2.0")])
    return root
