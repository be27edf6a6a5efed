"""Model preparation: a registry name → a converted model folder (pulled and converted when needed, both steps cached),
for `python -m inference_service serve|pull|convert` and docker/prepare_model.py alike.

Heavy modules (the converter, pip) are imported when a step runs, so that `--help` and `pull --list` start fast.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from inference_service.models import paths


def registry_name(model: str) -> str | None:
    """The registry name `--model` means ("default" is the default model's), or None for a folder path."""
    from inference_service.models.pull import DEFAULT_MODEL, MODELS

    if model == "default":
        return DEFAULT_MODEL.name
    return model if model in MODELS else None


def default_precision(device: str, architecture: Callable[[], str]) -> str:
    """The graph a device runs: on the CUDA EP (its attention kernels are fp16/bf16 only) fp16, or bf16 for
    architectures whose activations overflow fp16; else fp32. `architecture` is asked only on CUDA."""
    # the runner decides which EP a device means (whether a CUDA GPU is visible): asked, not repeated here
    from inference_service.engine.runner import CUDA_EP, select_provider
    from inference_service.models.convert import cuda_precision

    return cuda_precision(architecture()) if select_provider(device) == CUDA_EP else "fp32"


def prepare_model(
    name: str, progress: bool = True, precision: str | None = None, device: str = "cpu", cache: Path | None = None
) -> Path:
    """Pull and convert the registry model `name` when needed (both steps are cached in `cache`, default
    paths.cache_dir()), in `precision` or else in the one `device` runs."""
    from inference_service.models.convert import convert
    from inference_service.models.pull import get_model, pull

    model = get_model(name)
    gguf = pull(paths.default_gguf_dir(cache), model, progress=progress)
    precision = precision or default_precision(device, lambda: model.architecture)
    return convert(gguf, paths.model_dir(name, precision, cache), progress=progress, precision=precision)


def default_model_dir(progress: bool = True, precision: str = "fp32") -> Path:
    """Pull and convert the default model when needed (both steps are cached)."""
    from inference_service.models.pull import DEFAULT_MODEL

    return prepare_model(DEFAULT_MODEL.name, progress, precision)


def preparation_errors() -> tuple[type[Exception], ...]:
    """Typed errors of pulling or converting a model: reported in one line, never as a traceback."""
    from inference_service.models.convert import UnsupportedModelError
    from inference_service.models.gguf_tokenizer import UnsupportedTokenizerError
    from inference_service.models.gguf_weights import UnsupportedTensorTypeError
    from inference_service.models.pull import PullError

    return PullError, UnsupportedModelError, UnsupportedTokenizerError, UnsupportedTensorTypeError
