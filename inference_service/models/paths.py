"""Where models live on disk (overridable with ORTSERVE_CACHE_DIR)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    env = os.environ.get("ORTSERVE_CACHE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ortserve"


def default_gguf_dir() -> Path:
    """Every pulled GGUF (each registry model has its own file name) and its license files."""
    return cache_dir() / "gguf"


def model_dir(name: str, precision: str = "fp32") -> Path:
    """The converted registry model `name`; fp32 (the CPU graph) keeps the plain name, fp16/bf16 get a suffix."""
    from inference_service.models.pull import get_model

    get_model(name)  # a registry name, never a path fragment
    return cache_dir() / "models" / (name + ("" if precision == "fp32" else f"-{precision}"))


def default_model_dir(precision: str = "fp32") -> Path:
    from inference_service.models.pull import DEFAULT_MODEL

    return model_dir(DEFAULT_MODEL.name, precision)
