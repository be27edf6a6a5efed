"""Wire a model folder into a running engine: config → graphs → tokenizer → runner → core → warm-up → async front.

Preparing is done here, before anything runs: derived CPU graphs are built (or found in the cache) and handed to
the runner, which only loads them. The warm-up is one real generation; on CUDA its profile proves that attention
and matmuls ran on the GPU. Either failing stops the service before it reports ready.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

from inference_service.engine.async_engine import AsyncEngine
from inference_service.engine.constraints import GrammarCompiler
from inference_service.engine.core import EngineCore
from inference_service.engine.errors import EngineInternalError
from inference_service.engine.placement import check_placement, summary
from inference_service.engine.prefix_cache import PrefixCacheConfig
from inference_service.engine.runner import CPU_EP, ModelRunner, RunnerOptions, select_provider
from inference_service.engine.scheduler import SchedulerConfig
from inference_service.engine.speculative import SpeculativeConfig
from inference_service.engine.tokenizer import ChatTemplateError, Tokenizer
from inference_service.engine.types import GenerationRequest, SamplingParams, StoppingParams
from inference_service.models.cpu_graphs import CpuGraphs, cpu_graphs
from inference_service.models.folder import ModelConfig, ModelFolderError, load_model_config

logger = logging.getLogger(__name__)


class ModelNotServableError(RuntimeError):
    """The model loaded but cannot be served here: its warm-up generation failed, or it ran off the device."""


@dataclass(slots=True, frozen=True)
class ServedModel:
    model_id: str
    config: ModelConfig
    engine: AsyncEngine
    execution_provider: str
    precision: str
    fingerprint: str
    created: int
    aliases: tuple[str, ...] = ()  # more names it answers to (--served-model-name); model_id is the primary

    @property
    def names(self) -> tuple[str, ...]:
        return (self.model_id, *self.aliases)


def fingerprint(folder: Path) -> str:
    """Changes with the model files' metadata and the runtime build, like OpenAI's system_fingerprint."""
    digest = hashlib.sha256(ort.__version__.encode())
    for name in ("genai_config.json", "ortserve_convert.json", "tokenizer_config.json"):
        path = folder / name
        if path.exists():
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def prepare_graphs(config: ModelConfig, options: RunnerOptions) -> CpuGraphs:
    """The graphs the runner will load: on the CPU EP with a cache, the derived ones that apply; else as shipped."""
    if select_provider(options.device) != CPU_EP or options.cache_dir is None:
        return CpuGraphs(config.model_file, None, None)
    return cpu_graphs(
        config.model_file,
        config.logits_name,
        options.cache_dir,
        dense=options.dense_min_rows > 0,
        screen_head=options.screen_head,
    )


def load_runner(config: ModelConfig, options: RunnerOptions) -> ModelRunner:
    """A runner over the prepared graphs."""
    return ModelRunner(config, options, prepare_graphs(config, options))


def describe_precision(runner: ModelRunner, folder: Path) -> str:
    """What GetModelInfo and /metrics report: the graph's compute type, and whether GGUF weights are kept exact."""
    name = runner.precision.name
    if not (folder / "ortserve_convert.json").exists():
        return f"{name} (as built)"
    if name == "fp32":
        return "fp32 (GGUF weights exact)"
    if name == "fp16":
        return "fp16 (GGUF 4-bit codes and f16 scales kept, fp32 LM head)"
    return f"{name} (GGUF 4-bit codes kept, scales rounded to {name}, fp32 LM head)"


def warm_up(core: EngineCore, max_steps: int = 8) -> None:
    """One real generation before serving (a two-token prefill, then a decode step): a model or device that cannot
    generate raises here (what the model raised, when it did), before anything reports ready."""
    core.add_request(
        GenerationRequest(
            "warm-up",
            [core.pad_token_id] * 2,
            SamplingParams(temperature=0.0),
            StoppingParams(max_tokens=2, ignore_eos=True),
            arrival_time=time.monotonic(),  # not 0: --max-queue-wait-s would expire it before it ran
        )
    )
    for _ in range(max_steps):
        if not core.has_work:
            break
        result = core.step()
        if result.error is not None:
            raise result.error
        for failure in result.failures:
            raise failure.error
    if core.has_work:
        core.abort_request("warm-up")
        raise EngineInternalError(f"warm-up generation did not finish in {max_steps} steps")


def load_model(
    folder: Path,
    model_id: str,
    runner_options: RunnerOptions,
    scheduler_config: SchedulerConfig,
    prefix_cache: PrefixCacheConfig | None = None,
    chat_template: Path | None = None,
    aliases: tuple[str, ...] = (),
    speculative: SpeculativeConfig | None = None,
    max_waiting: int = 1024,
) -> ServedModel:
    """`chat_template`: a Jinja file replacing the folder's chat template (`--chat-template`); `aliases`: more names
    the model answers to (`--served-model-name`); `max_waiting`: requests queued beyond the KV slots before
    RESOURCE_EXHAUSTED (`--max-waiting`)."""
    config = load_model_config(folder)
    try:
        tokenizer = Tokenizer.from_dir(folder, chat_template=chat_template)
    except ChatTemplateError as e:
        raise ModelNotServableError(f"{e} (--chat-template / ORTSERVE_CHAT_TEMPLATE)") from e
    try:
        runner = load_runner(config, runner_options)
    except ModelFolderError:
        raise
    except Exception as e:  # onnxruntime refused the graph (e.g. a type with no kernel on this EP)
        raise ModelNotServableError(f"{folder} cannot be loaded on device {runner_options.device}: {e}") from e
    eos = config.eos_token_ids or tokenizer.eos_token_ids
    core = EngineCore(runner, tokenizer, eos, scheduler_config, config.pad_token_id or 0, prefix_cache, speculative)
    started = time.monotonic()
    try:
        warm_up(core)
        runs = runner.placement()
        if runs is not None:
            logger.info("node placement of the warm-up passes (op: {provider: nodes}): %s", summary(runs))
            check_placement(runs, runner.provider)
    except Exception as e:
        raise ModelNotServableError(f"{folder} cannot be served on {runner.provider}: warm-up failed: {e}") from e
    logger.info("warm-up generation on %s: %.2f s", runner.provider, time.monotonic() - started)
    precision = describe_precision(runner, folder)
    return ServedModel(
        model_id=model_id or folder.name,
        aliases=aliases,
        config=config,
        engine=AsyncEngine(
            core,
            tokenizer,
            config.context_length,
            GrammarCompiler(folder / "tokenizer.json", eos, config.vocab_size),
            max_waiting,
        ),
        execution_provider=runner.provider,
        precision=precision,
        fingerprint=fingerprint(folder),
        created=int(time.time()),
    )
