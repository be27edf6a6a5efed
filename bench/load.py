"""Bounded closed-loop load: `concurrency` workers share `requests` requests and a wall-clock deadline."""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass

import grpc

from bench.clients import GenParams, HTTPChatClient, StreamClient
from bench.prompts import make_prompt
from bench.stats import RequestResult, percentile
from inference_service.api.v1 import model_pb2, model_pb2_grpc

# ~94 prompt tokens after SmolLM2's ChatML template; ~1,000 for the prefill probe (usage reports the real counts).
SHORT_PROMPT_WORDS = 37
LONG_PROMPT_WORDS = 812


@dataclass(slots=True, frozen=True)
class Scenario:
    concurrency: int
    requests: int
    deadline_s: float


async def run_scenario(
    client: StreamClient, scenario: Scenario, run_id: str, params: GenParams, words: int = SHORT_PROMPT_WORDS
) -> list[RequestResult]:
    """Every worker takes the next request index until none are left or the deadline has passed."""
    counter = itertools.count()
    deadline = time.perf_counter() + scenario.deadline_s
    results: list[RequestResult] = []

    async def worker() -> None:
        while time.perf_counter() < deadline and (index := next(counter)) < scenario.requests:
            remaining = max(1.0, deadline - time.perf_counter())
            bounded = GenParams(
                max_tokens=params.max_tokens, request_timeout_s=min(params.request_timeout_s, remaining)
            )
            results.append(await client.stream(make_prompt(run_id, index, words), bounded))

    await asyncio.gather(*(worker() for _ in range(scenario.concurrency)))
    return results


async def measure_prefill(client: StreamClient, run_id: str, repeats: int) -> list[RequestResult]:
    """Single requests with a ~1,000-token prompt and 2 output tokens: prefill tok/s = prompt tokens / TTFT."""
    params = GenParams(max_tokens=2, request_timeout_s=120.0)
    return [await client.stream(make_prompt(run_id, i, LONG_PROMPT_WORDS), params) for i in range(repeats)]


def prefill_tok_s(results: list[RequestResult]) -> float:
    """Median over the successful probes."""
    rates = [r.prompt_tokens / t for r in results if r.error is None and (t := r.ttft) and r.prompt_tokens]
    return percentile(rates, 50)


async def _running(stub: model_pb2_grpc.ModelServiceStub) -> int:
    reply = await stub.GetServerLoad(model_pb2.GetServerLoadRequest(), timeout=5.0)
    return int(reply.running_sequences)


async def wait_idle(stub: model_pb2_grpc.ModelServiceStub, timeout_s: float = 60.0) -> bool:
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        if await _running(stub) == 0:
            return True
        await asyncio.sleep(0.05)
    return False


async def measure_cancel_to_free(
    http: HTTPChatClient,
    grpc_target: str,
    run_id: str,
    repeats: int,
    read_chunks: int = 3,
    poll_timeout_s: float = 10.0,
) -> list[float]:
    """Open a stream through the bridge, read a few chunks, disconnect, then poll GetServerLoad every ~2 ms until
    the sequence is gone. Returns seconds from the disconnect to the first poll showing no running sequence
    (a request that never frees counts as `poll_timeout_s`)."""
    latencies: list[float] = []
    async with grpc.aio.insecure_channel(grpc_target) as channel:
        stub = model_pb2_grpc.ModelServiceStub(channel)
        for i in range(repeats):
            if not await wait_idle(stub):
                raise RuntimeError("the inference service did not go idle before the cancel probe")
            prompt = make_prompt(run_id, i, SHORT_PROMPT_WORDS)
            result = await http.stream(
                prompt, GenParams(max_tokens=128, request_timeout_s=60.0), stop_after=read_chunks
            )
            if result.error is not None:
                raise RuntimeError(f"cancel probe request failed: {result.error}")
            disconnected = result.end
            deadline = disconnected + poll_timeout_s
            while time.perf_counter() < deadline and await _running(stub) > 0:
                await asyncio.sleep(0.002)
            latencies.append(min(time.perf_counter() - disconnected, poll_timeout_s))
    return latencies
