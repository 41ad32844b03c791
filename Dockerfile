# mlrollouts operator (and built-in gateway) image.
# Build: docker build -t ghcr.io/mlrollouts/mlrollouts:0.1.0 .
# The base is pinned by tag; pin it by digest too (python:3.11-slim-bookworm@sha256:…) in release builds.

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Only what the package build needs: the image never sees tests, charts or local virtualenvs.
# Dependencies come from requirements.lock (exact versions, sha256 hashes: `make lock`), installed before the
# source is copied so the layer is reused; the package itself adds nothing unpinned (--no-deps).
COPY requirements.lock ./
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --require-hashes --no-deps -r requirements.lock
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN /opt/venv/bin/pip install --no-deps . \
    && /opt/venv/bin/pip check

FROM python:3.11-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
# A fixed numeric UID/GID (10001) so Kubernetes can check runAsNonRoot without a user database lookup.
RUN groupadd --system --gid 10001 mlrollouts \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin mlrollouts
COPY --from=build /opt/venv /opt/venv
USER 10001:10001
# 8080: Prometheus /metrics, 8081: kopf liveness /healthz, 8082: readiness /readyz (the gateway uses its own --port).
EXPOSE 8080 8081 8082
ENTRYPOINT ["mlrollouts"]
CMD ["run", "--all-namespaces", "--standalone"]
