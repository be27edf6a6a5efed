"""Helpers for tests that run several inference services and bridges as real processes on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.sse import iter_payloads, json_or_done

READY = "inference_service.api.v1.GenerationService"


def serve_args(model_dir: Path, model_id: str, port: int, metrics_port: int, *extra: str) -> list[str]:
    """A small inference service: one ORT thread (the test machine has 2 cores), 4 slots of 1024 tokens."""
    return [
        *("-m", "inference_service", "serve", "--model", str(model_dir), "--model-id", model_id),
        *("--port", str(port), "--metrics-port", str(metrics_port), "--threads", "1"),
        *("--max-num-seqs", "4", "--max-model-len", "1024", "--log-format", "text", *extra),
    ]


def metric(metrics_port: int, name: str, **labels: str) -> float:
    """Sum of the samples called `name` whose labels include `labels` (0 when there are none)."""
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def served_ok(metrics_port: int) -> float:
    return metric(metrics_port, "ortserve_requests_total", status="OK")


def sse_data(lines: Iterator[str]) -> Iterator[object]:
    """Decoded `data:` payloads of an SSE body ('[DONE]' kept as the string)."""
    for payload in iter_payloads(lines):
        yield json_or_done(payload)


def chat(model: str, max_tokens: int = 4, **extra: object) -> dict[str, object]:
    messages = [{"role": "user", "content": "Tell me a story about a lighthouse."}]
    return {"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": 0, **extra}
