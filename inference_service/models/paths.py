"""Where models live on disk: under the cache directory, the `cache_dir` setting (ORTSERVE_CACHE_DIR, `--cache-dir`).

ServiceSettings has the field `cache_dir` as CacheSettings has it, so both resolve it the same way: `cache_dir()`
reads it alone for the commands that have no ServiceSettings (pull, convert).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from pydantic import BeforeValidator, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ortserve"


def _empty_is_default(value: object) -> object:
    return default_cache_dir() if value == "" else value  # ORTSERVE_CACHE_DIR= means the default, as it always did


CacheDir = Annotated[Path, BeforeValidator(_empty_is_default)]
CACHE_DIR_HELP = (
    "cache of pulled GGUFs (gguf/), converted models (models/) and derived CPU graphs (cpu-graphs/); "
    "unset or empty: $XDG_CACHE_HOME/ortserve, else ~/.cache/ortserve"
)


class CacheSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ORTSERVE_", extra="ignore")

    # ServiceSettings.cache_dir is this same line.
    cache_dir: CacheDir = Field(default_factory=default_cache_dir, description=CACHE_DIR_HELP)


def cache_dir() -> Path:
    """The cache directory the environment sets (for commands without ServiceSettings: pull, convert)."""
    return CacheSettings().cache_dir


def default_gguf_dir(root: Path | None = None) -> Path:
    """Every pulled GGUF (each registry model has its own file name) and its license files; `root` = cache_dir()."""
    return (root or cache_dir()) / "gguf"


def model_dir(name: str, precision: str = "fp32", root: Path | None = None) -> Path:
    """The converted registry model `name`; fp32 (the CPU graph) keeps the plain name, fp16/bf16 get a suffix."""
    from inference_service.models.pull import get_model

    get_model(name)  # a registry name, never a path fragment
    return (root or cache_dir()) / "models" / (name + ("" if precision == "fp32" else f"-{precision}"))


def cpu_graphs_dir(root: Path | None = None) -> Path:
    """The CPU graphs derived at load time (dense twins, screened heads; models/cpu_graphs.py); `root` = cache_dir()."""
    return (root or cache_dir()) / "cpu-graphs"


def default_model_dir(precision: str = "fp32") -> Path:
    from inference_service.models.pull import DEFAULT_MODEL

    return model_dir(DEFAULT_MODEL.name, precision)
