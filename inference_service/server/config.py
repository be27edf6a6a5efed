"""Settings → engine configuration: the one mapping from ServiceSettings to what the engine takes, used by `serve`
and by docker/prepare_model.py (which derives the same CPU graphs into the same cache)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from inference_service.engine.prefix_cache import PrefixCacheConfig
from inference_service.engine.runner import RunnerOptions
from inference_service.engine.scheduler import SchedulerConfig
from inference_service.engine.sequence import Sequence
from inference_service.engine.speculative import SpeculativeConfig
from inference_service.models import paths
from inference_service.server.settings import ServiceSettings

FaultHook = Callable[[Sequence], None]


@dataclass(slots=True, frozen=True)
class EngineConfig:
    runner: RunnerOptions
    scheduler: SchedulerConfig
    prefix_cache: PrefixCacheConfig
    speculative: SpeculativeConfig
    max_waiting: int  # requests queued beyond the KV slots before RESOURCE_EXHAUSTED
    fault_hook: FaultHook | None  # --fault-injection: the engine core calls it for every sequence it steps


def engine_config(settings: ServiceSettings) -> EngineConfig:
    return EngineConfig(
        runner=RunnerOptions(
            device=settings.device,
            device_id=settings.device_id,
            threads=settings.threads,
            spinning=settings.spinning,
            num_slots=settings.max_num_seqs,
            slot_capacity=settings.max_model_len,
            kv_cache_mib=settings.kv_cache_mib,
            dense_min_rows=settings.dense_min_rows,
            screen_head=settings.screen_head,
            cache_dir=paths.cpu_graphs_dir(settings.cache_dir),
        ),
        scheduler=SchedulerConfig(
            max_batched_tokens=settings.max_batched_tokens,
            max_queue_wait_s=settings.max_queue_wait_s,
            long_prefill_token_threshold=settings.long_prefill_token_threshold,
            max_num_partial_prefills=settings.max_num_partial_prefills,
        ),
        prefix_cache=PrefixCacheConfig(max_entries=settings.prefix_cache_entries),
        speculative=SpeculativeConfig(
            method=settings.speculative,
            ngram=settings.speculative_ngram,
            max_draft=settings.speculative_max_draft,
            max_batch=settings.speculative_max_batch,
        ),
        max_waiting=settings.max_waiting,
        fault_hook=inject_faults if settings.fault_injection else None,
    )


def inject_faults(seq: Sequence) -> None:
    """Testing hook (--fault-injection): fail inside the engine step for marked requests."""
    if seq.request.request_id.startswith("fault-inject"):
        raise RuntimeError(f"injected fault for {seq.request.request_id}")
