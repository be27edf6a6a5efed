"""Where the default model lives on disk (overridable with ORTSERVE_CACHE_DIR)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    env = os.environ.get("ORTSERVE_CACHE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ortserve"


def default_gguf_dir() -> Path:
    return cache_dir() / "gguf"


def default_model_dir(precision: str = "fp32") -> Path:
    """The converted default model; fp32 (the CPU graph) keeps the plain name, fp16/bf16 get a suffix."""
    name = "smollm2-135m-instruct" + ("" if precision == "fp32" else f"-{precision}")
    return cache_dir() / "models" / name
