# syntax=docker/dockerfile:1
# One image for every edgeswarm role: gateway, edge, infer, and the operator
# commands (keys, status, state, log). The entry point is `edgeswarm`:
#
#   docker build -t edgeswarm:0.1.0 .
#   docker run --rm edgeswarm:0.1.0 gateway --help
#
# Multi-arch: numpy, wasmtime, qh3, aioquic, onnxruntime and ai-edge-litert
# publish aarch64 wheels, so `docker buildx build --platform linux/arm64`
# builds the same image for Raspberry Pi / Jetson class IoT gateways
# (docs/deploy-k3s.md, "Images"). The GPU variant for inference nodes is
# Dockerfile.gpu.

ARG PYTHON_IMAGE=python:3.12-slim-bookworm

# --- build: the edgeswarm wheel, from the source tree ------------------------
FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY edgeswarm ./edgeswarm
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# --- install: a virtual environment with the locked dependencies -------------
FROM ${PYTHON_IMAGE} AS install
COPY docker/requirements.lock /tmp/requirements.lock
COPY --from=build /wheels /wheels
RUN python -m venv /opt/edgeswarm/venv \
    && /opt/edgeswarm/venv/bin/pip install --no-cache-dir --require-virtualenv \
        -r /tmp/requirements.lock \
    && /opt/edgeswarm/venv/bin/pip install --no-cache-dir --no-deps /wheels/edgeswarm-*.whl \
    && /opt/edgeswarm/venv/bin/pip check
# the demo's models, so that an edge and an inference node run out of the box
# (anomaly.tflite for edges' policies, triage.onnx for inference nodes)
RUN /opt/edgeswarm/venv/bin/python -c "from pathlib import Path; \
from edgeswarm.models import write_anomaly_model, write_triage_onnx; \
d = Path('/opt/edgeswarm/models'); d.mkdir(parents=True); \
write_anomaly_model(d / 'anomaly.tflite'); write_triage_onnx(d / 'triage.onnx')"
COPY docker/healthcheck.py /opt/edgeswarm/healthcheck.py

# --- runtime -----------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="edgeswarm" \
      org.opencontainers.image.description="QUIC edge agent runtime with WebAssembly agents" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 edgeswarm \
    && useradd --system --uid 10001 --gid edgeswarm --no-create-home \
        --home-dir /var/lib/edgeswarm --shell /usr/sbin/nologin edgeswarm \
    && install -d -o edgeswarm -g edgeswarm -m 0700 /var/lib/edgeswarm
COPY --from=install /opt/edgeswarm /opt/edgeswarm
ENV PATH=/opt/edgeswarm/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /var/lib/edgeswarm
# QUIC (gateway), /metrics /healthz /readyz (gateway, edge, inference node), OIP v2 (inference node)
EXPOSE 4433/udp 9464/tcp 9465/tcp 9466/tcp 8000/tcp
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "/opt/edgeswarm/healthcheck.py"]
ENTRYPOINT ["edgeswarm"]
CMD ["--help"]
