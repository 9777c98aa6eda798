# syntax=docker/dockerfile:1
# otelgw images. Two targets (BuildKit, the default builder since Docker 23):
#
#   docker build -t otelgw .                          # default: with the embedded store (chDB)
#   docker build --target server -t otelgw:server .   # ClickHouse server mode only: no chDB,
#                                                     # pandas, pyarrow (~800 MB smaller)
#
#   docker run -p 4317:4317 -p 4318:4318 -v otelgw-data:/var/lib/otelgw otelgw
#   docker run -p 4317:4317 -p 4318:4318 -e CLICKHOUSE_ENDPOINT=http://clickhouse:8123 otelgw:server
#
# Both run as uid/gid 10001 with /etc/otelgw/config.yaml (deploy/docker/config.yaml); mount
# another file there to change it. Kubernetes manifests: deploy/.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- wheels of the server-mode dependencies: rebuilt only when pyproject.toml changes ----------
FROM ${PYTHON_IMAGE} AS deps
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY pyproject.toml ./
COPY deploy/docker/requirements.py /usr/local/bin/otelgw-requirements
RUN mkdir /wheels \
 && python /usr/local/bin/otelgw-requirements pyproject.toml server \
        > /wheels/requirements-server.txt \
 && python /usr/local/bin/otelgw-requirements pyproject.toml embedded \
        > /wheels/requirements-embedded.txt \
 && pip wheel --wheel-dir /wheels -r /wheels/requirements-server.txt

# ---- the otelgw wheel --------------------------------------------------------------------------
FROM deps AS build
COPY README.md ./
COPY gateway/ gateway/
COPY receivers/ receivers/
COPY processors/ processors/
COPY exporters/ exporters/
COPY extensions/ extensions/
RUN pip wheel --no-deps --wheel-dir /wheels/otelgw .

# ---- wheels of the embedded engine (chdb-core, pandas, pyarrow), for the default target only ----
FROM deps AS build-embedded
RUN pip wheel --wheel-dir /wheels --find-links /wheels -r /wheels/requirements-embedded.txt

# ---- what both images share: the user, the directories, the configuration ----------------------
FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    OTELGW_DATA=/var/lib/otelgw
# a fixed numeric uid, so that Kubernetes' runAsNonRoot can verify it without a passwd lookup
RUN groupadd --system --gid 10001 otelgw \
 && useradd --system --uid 10001 --gid otelgw --home-dir /var/lib/otelgw --no-create-home \
        --shell /usr/sbin/nologin otelgw \
 && mkdir -p /etc/otelgw /var/lib/otelgw \
 && chown otelgw:otelgw /var/lib/otelgw
COPY config/ /etc/otelgw/examples/
COPY deploy/docker/config.yaml /etc/otelgw/config.yaml
WORKDIR /var/lib/otelgw
# OTLP gRPC, OTLP HTTP, prometheus exporter, self-metrics, health_check
EXPOSE 4317 4318 8889 8888 13133
# the health_check extension: 200 once every receiver listens, 503 while starting or draining
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:13133/', timeout=4)"]

# ---- server mode only ------------------------------------------------------------------------
FROM base AS server
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels -r /wheels/requirements-server.txt \
 && pip install --no-index --no-deps /wheels/otelgw/*.whl
USER 10001:10001
ENTRYPOINT ["otelgw", "run", "--config", "/etc/otelgw/config.yaml"]

# ---- the default: server mode and the embedded store -------------------------------------------
FROM base AS embedded
RUN --mount=type=bind,from=build-embedded,source=/wheels,target=/wheels \
    --mount=type=bind,from=build,source=/wheels/otelgw,target=/otelgw \
    pip install --no-index --find-links /wheels \
        -r /wheels/requirements-server.txt -r /wheels/requirements-embedded.txt \
 && pip install --no-index --no-deps /otelgw/*.whl
USER 10001:10001
ENTRYPOINT ["otelgw", "run", "--config", "/etc/otelgw/config.yaml"]
