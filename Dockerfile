# memory-spine: the service on its embedded default (SQLite + HNSW + all-MiniLM-L6-v2 through ONNX Runtime).
#   docker build -t memory-spine .
#   docker run -p 127.0.0.1:8788:8788 -v memory-spine-data:/data -e MEMORY_SPINE_TOKEN=change-me memory-spine
# Inside the container the service binds 0.0.0.0 (so the port can be published), which it refuses to do
# without a token: set MEMORY_SPINE_TOKEN, or MEMORY_SPINE_INSECURE=1 on a trusted network.
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    MEMORY_SPINE_HOST=0.0.0.0 \
    MEMORY_SPINE_PORT=8788 \
    MEMORY_SPINE_DATA_DIR=/data \
    MEMORY_SPINE_MODEL_CACHE=/opt/memory-spine/models

WORKDIR /app

COPY pyproject.toml README.md ./
COPY memory_spine ./memory_spine
COPY workflow_kit ./workflow_kit
# Extra packages, e.g. the PostgreSQL driver for replicas (docker-compose.yml passes it).
ARG EXTRA_PACKAGES=""
# No torch: the ONNX graph ships in the package; fetch-model puts the weights (one 87 MB file and the
# tokenizer) into MEMORY_SPINE_MODEL_CACHE now, so the container never reaches a registry at run time.
# hnswlib has no wheel on PyPI and compiles from source: g++ is installed for the build and removed after, in
# the same layer, so the image does not carry it.
RUN apt-get update \
 && apt-get install -y --no-install-recommends g++ \
 && pip install . ${EXTRA_PACKAGES} \
 && apt-get purge -y --auto-remove g++ \
 && rm -rf /var/lib/apt/lists/* \
 && memory-spine fetch-model \
 && useradd --system --uid 10001 --home-dir /data memory-spine \
 && mkdir -p /data && chown memory-spine /data

USER memory-spine
VOLUME /data
EXPOSE 8788
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD python -c "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8788/health', timeout=2).status != 200)"
# SIGTERM (docker stop) finishes in-flight requests, saves the index and exits 0.
STOPSIGNAL SIGTERM
CMD ["memory-spine", "serve"]
