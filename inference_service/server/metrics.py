"""Prometheus metrics of the inference service (served on their own HTTP port by prometheus-client)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, Info, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from inference_service.engine.loader import ServedModel
from inference_service.engine.types import ChoiceOutput

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
ITL_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0)


class _EngineCollector(Collector):
    """Gauges and counters from each engine's load snapshot at scrape time (no bookkeeping on the hot path)."""

    def __init__(self, models: Mapping[str, ServedModel]) -> None:
        self.models = models

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        running = GaugeMetricFamily("ortserve_running_sequences", "Sequences in the running batch", labels=["model"])
        waiting = GaugeMetricFamily("ortserve_waiting_requests", "Requests waiting for a KV slot", labels=["model"])
        used = GaugeMetricFamily("ortserve_kv_tokens_used", "Tokens held in the KV cache", labels=["model"])
        total = GaugeMetricFamily(
            "ortserve_kv_tokens_total", "KV cache budget in tokens (--kv-cache-mib)", labels=["model"]
        )
        hits = CounterMetricFamily(
            "ortserve_prefix_cache_hit_tokens", "Prompt tokens reused from the prefix cache", labels=["model"]
        )
        preemptions = CounterMetricFamily(
            "ortserve_preemptions", "Running sequences preempted to stay within the KV budget", labels=["model"]
        )
        drafted = CounterMetricFamily(
            "ortserve_spec_draft_tokens", "Tokens drafted by prompt lookup and verified", labels=["model"]
        )
        accepted = CounterMetricFamily(
            "ortserve_spec_accepted_tokens", "Drafted tokens the model accepted", labels=["model"]
        )
        for model_id, model in self.models.items():
            load = model.engine.load()
            drafted.add_metric([model_id], load.draft_tokens)
            accepted.add_metric([model_id], load.accepted_draft_tokens)
            running.add_metric([model_id], load.running_sequences)
            waiting.add_metric([model_id], load.waiting_requests)
            used.add_metric([model_id], load.kv_tokens_used)
            total.add_metric([model_id], load.kv_tokens_total)
            hits.add_metric([model_id], load.prefix_cache_hit_tokens)
            preemptions.add_metric([model_id], load.preemptions)
        yield from (running, waiting, used, total, hits, preemptions, drafted, accepted)


class ServiceMetrics:
    def __init__(self, models: Mapping[str, ServedModel], registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "ortserve_requests", "Generate requests by final gRPC status", ["model", "status"], registry=r
        )
        self.ttft = Histogram(
            "ortserve_time_to_first_token_seconds",
            "Arrival to first token",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.itl = Histogram(
            "ortserve_inter_token_latency_seconds",
            "Time between streamed chunks of a choice",
            ["model"],
            buckets=ITL_BUCKETS,
            registry=r,
        )
        self.queue = Histogram(
            "ortserve_queue_time_seconds",
            "Arrival to admission into the batch",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.e2e = Histogram(
            "ortserve_request_duration_seconds", "Arrival to completion", ["model"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.prompt_tokens = Counter("ortserve_prompt_tokens", "Prompt tokens processed", ["model"], registry=r)
        self.generation_tokens = Counter("ortserve_generation_tokens", "Tokens generated", ["model"], registry=r)
        info = Info("ortserve_model", "Served models and their execution provider", ["model"], registry=r)
        for model_id, model in models.items():
            info.labels(model=model_id).info(
                {
                    "execution_provider": model.execution_provider,
                    "precision": model.precision,
                    "context_length": str(model.engine.context_length),
                }
            )
        r.register(_EngineCollector(models))

    def serve(self, host: str, port: int) -> None:
        start_http_server(port, addr=host, registry=self.registry)

    def track(self, model_id: str) -> RequestTracker:
        return RequestTracker(self, model_id)


class RequestTracker:
    """Per-request observations: ITL between outputs of a choice; timings and usage from each completion."""

    def __init__(self, metrics: ServiceMetrics, model_id: str) -> None:
        self.metrics = metrics
        self.model = model_id
        self._last: dict[int, float] = {}
        self._prompt_counted = False

    def on_output(self, output: ChoiceOutput, now: float) -> None:
        m, model = self.metrics, self.model
        last = self._last.get(output.index)
        if last is not None:
            m.itl.labels(model).observe(now - last)
        self._last[output.index] = now
        if output.finish_reason is None:
            return
        m.generation_tokens.labels(model).inc(output.completion_tokens)
        if not self._prompt_counted:  # n choices share one prompt
            self._prompt_counted = True
            m.prompt_tokens.labels(model).inc(output.prompt_tokens)
            if output.timing is not None:
                m.ttft.labels(model).observe(output.timing.time_to_first_token_seconds)
                m.queue.labels(model).observe(output.timing.queue_seconds)
                m.e2e.labels(model).observe(output.timing.total_seconds)

    def finish(self, status: str) -> None:
        self.metrics.requests.labels(self.model, status).inc()
