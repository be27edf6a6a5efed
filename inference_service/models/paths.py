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


def default_model_dir() -> Path:
    return cache_dir() / "models" / "smollm2-135m-instruct"
