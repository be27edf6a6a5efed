# syntax=docker/dockerfile:1.7
# HTTP bridge image: the project installed with --no-deps plus only the bridge's runtime dependencies
# (docker/requirements.py reads them from pyproject.toml): no onnxruntime, onnx, gguf, tokenizers or numpy.
#   docker build -f docker/bridge.Dockerfile -t ortserve-bridge:0.1.0 .
# Settings come from ORTSERVE_BRIDGE_* environment variables (http_bridge/settings.py).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
WORKDIR /src
COPY pyproject.toml README.md ./
COPY inference_service ./inference_service
COPY http_bridge ./http_bridge
COPY ortserve_common ./ortserve_common
COPY docker/requirements.py ./docker/
RUN pip wheel --no-cache-dir --disable-pip-version-check --no-deps --wheel-dir /dist . \
    && python docker/requirements.py bridge > /dist/bridge.txt

FROM ${PYTHON_IMAGE} AS bridge
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# Fails the build if an engine dependency got in, or if the bridge imports something outside its subset.
RUN --mount=type=bind,from=builder,source=/dist,target=/dist \
    pip install --only-binary=:all: -r /dist/bridge.txt \
    && pip install --no-deps /dist/ortserve-*.whl \
    && python -c "import importlib.util as u; bad = [m for m in ('onnxruntime', 'onnx', 'gguf', 'tokenizers', 'numpy') if u.find_spec(m)]; assert not bad, bad" \
    && python -c "import ortserve_common.logs, ortserve_common.settings_flags, http_bridge.app, http_bridge.__main__"
RUN groupadd --system --gid 10001 ortserve \
    && useradd --system --uid 10001 --gid ortserve --create-home --home-dir /home/ortserve ortserve
COPY docker/healthcheck.py /opt/ortserve/
ENV ORTSERVE_BRIDGE_HOST=0.0.0.0 \
    ORTSERVE_BRIDGE_PORT=8000
USER 10001:10001
WORKDIR /home/ortserve
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "/opt/ortserve/healthcheck.py", "http"]
ENTRYPOINT ["python", "-m", "http_bridge"]
