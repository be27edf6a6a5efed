"""Wire a model folder into a running engine: config → tokenizer → runner → core → async front."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

from inference_service.engine.async_engine import AsyncEngine
from inference_service.engine.core import EngineCore
from inference_service.engine.prefix_cache import PrefixCacheConfig
from inference_service.engine.runner import ModelRunner, RunnerOptions
from inference_service.engine.scheduler import SchedulerConfig
from inference_service.engine.tokenizer import Tokenizer
from inference_service.models.folder import ModelConfig, load_model_config


@dataclass(slots=True, frozen=True)
class ServedModel:
    model_id: str
    config: ModelConfig
    engine: AsyncEngine
    execution_provider: str
    precision: str
    fingerprint: str
    created: int


def fingerprint(folder: Path) -> str:
    """Changes with the model files' metadata and the runtime build, like OpenAI's system_fingerprint."""
    digest = hashlib.sha256(ort.__version__.encode())
    for name in ("genai_config.json", "ortserve_convert.json", "tokenizer_config.json"):
        path = folder / name
        if path.exists():
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def load_model(
    folder: Path,
    model_id: str,
    runner_options: RunnerOptions,
    scheduler_config: SchedulerConfig,
    prefix_cache: PrefixCacheConfig | None = None,
) -> ServedModel:
    config = load_model_config(folder)
    tokenizer = Tokenizer.from_dir(folder)
    runner = ModelRunner(config, runner_options)
    eos = config.eos_token_ids or tokenizer.eos_token_ids
    core = EngineCore(runner, tokenizer, eos, scheduler_config, config.pad_token_id or 0, prefix_cache)
    precision = "GGUF weights kept exact, fp32 compute" if (folder / "ortserve_convert.json").exists() else "as built"
    return ServedModel(
        model_id=model_id or folder.name,
        config=config,
        engine=AsyncEngine(core, tokenizer, config.context_length),
        execution_provider=runner.provider,
        precision=precision,
        fingerprint=fingerprint(folder),
        created=int(time.time()),
    )
