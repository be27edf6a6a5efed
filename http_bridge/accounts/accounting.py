"""Per-key admission and usage around one completion request (its x-ratelimit-* headers: middleware.py).

`admit` (the one hook in pipeline.py) checks the key's models, reserves the request's tokens in its window (429
when over a limit) and returns a Ticket. The Ticket watches the request's Generate streams and, once every stream
has ended — finished, failed, or closed because the client left — settles: the reservation becomes the real usage
in the rate-limit window, and the usage is added to the day's totals and to the Prometheus counters.

Real usage is what the service reported in each choice's GenerationComplete (the `usage` the client is sent:
prompt tokens once per prompt, completion tokens summed over choices). A choice cut short by a disconnect has no
GenerationComplete: its completion tokens are the token ids it streamed (the bridge asks for them), its prompt the
admission estimate. Settling runs in a task of its own, so a cancelled request still gets charged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from http_bridge.accounts.counters import CounterStore, RateLimits, UsageRow, WindowState, utc_day
from http_bridge.accounts.failover_counters import FailoverCounters
from http_bridge.accounts.keys import KeyRecord
from http_bridge.accounts.rate_limits import (
    ModelAccessError,
    RateLimitExceededError,
    RateLimitSnapshot,
    current_key_window,
    prompt_estimate,
    reservation,
)
from inference_service.api.v1 import generation_pb2 as pb

logger = logging.getLogger(__name__)

ANONYMOUS = "anonymous"  # usage label while authentication is off

Stream = AsyncGenerator[pb.GenerateResponse, None]


class UsageMetrics:
    """Prometheus counters by key *name* (never the key or its hash) and model."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["key_name", "model"]
        self.requests = Counter(
            "ortserve_bridge_key_requests", "Completion requests answered, by key name", labels, registry=registry
        )
        self.prompt_tokens = Counter(
            "ortserve_bridge_key_prompt_tokens", "Prompt tokens charged, by key name", labels, registry=registry
        )
        self.completion_tokens = Counter(
            "ortserve_bridge_key_completion_tokens", "Completion tokens charged, by key name", labels, registry=registry
        )
        self.rate_limited = Counter(
            "ortserve_bridge_rate_limited",
            "Requests refused with 429 by a key's limit",
            ["key_name", "limit"],
            registry=registry,
        )


@dataclass(slots=True)
class _Choice:
    streamed_tokens: int = 0
    completion_tokens: int | None = None  # from GenerationComplete


@dataclass(slots=True)
class _Call:
    estimate: int
    answered: bool = False
    prompt_tokens: int | None = None
    choices: dict[int, _Choice] = field(default_factory=dict)

    def observe(self, response: pb.GenerateResponse) -> None:
        self.answered = True
        choice = self.choices.setdefault(response.index, _Choice())
        if response.HasField("chunk"):
            choice.streamed_tokens += len(response.chunk.token_ids)
        elif response.HasField("complete"):
            usage = response.complete.usage
            choice.completion_tokens = usage.completion_tokens
            self.prompt_tokens = max(self.prompt_tokens or 0, usage.prompt_tokens)

    def usage(self) -> tuple[int, int]:
        if not self.answered:
            return 0, 0
        prompt = self.prompt_tokens if self.prompt_tokens is not None else self.estimate
        completion = sum(
            c.completion_tokens if c.completion_tokens is not None else c.streamed_tokens for c in self.choices.values()
        )
        return prompt, completion


class Ticket:
    """One admitted request: observe its streams, settle once when the last one ends."""

    def __init__(
        self,
        accounting: Accounting,
        key: KeyRecord | None,
        model: str,
        requests: Sequence[pb.GenerateRequest],
        admission: tuple[RateLimits, WindowState, CounterStore] | None,
        reserved: int,
    ) -> None:
        self._accounting = accounting
        self._key = key
        self._model = model
        self._calls = [_Call(prompt_estimate(request)) for request in requests]
        self._admission = admission
        self._reserved = reserved
        self._open = 0
        self._settled = False

    async def _observe(self, call: _Call, stream: Stream) -> Stream:
        try:
            async for response in stream:
                call.observe(response)
                yield response
        finally:
            await stream.aclose()
            self._open -= 1
            if self._open == 0:
                self.settle()

    def observe(self, index: int, stream: Stream) -> Stream:
        self._open += 1
        return self._observe(self._calls[index], stream)

    def settle(self) -> None:
        """Charge the real usage (idempotent; the first call wins)."""
        if self._settled:
            return
        self._settled = True
        totals = [call.usage() for call in self._calls]
        prompt, completion = sum(t[0] for t in totals), sum(t[1] for t in totals)
        answered = any(call.answered for call in self._calls)
        self._accounting.charge(self._key, self._model, self._admission, self._reserved, answered, prompt, completion)


class Accounting:
    """The app's limits and usage (deps.AccountingDep); owns the counter store and the settle tasks."""

    def __init__(self, counters: FailoverCounters, window_s: float, registry: CollectorRegistry) -> None:
        self.counters = counters
        self.window_ms = max(1, round(window_s * 1000))
        self.metrics = UsageMetrics(registry)
        self._tasks: set[asyncio.Task[None]] = set()

    def limits(self, key: KeyRecord | None) -> RateLimits | None:
        if key is None or not key.limited:
            return None
        return RateLimits(key.rpm, key.tpm, self.window_ms)

    async def admit(self, key: KeyRecord | None, requests: Sequence[pb.GenerateRequest]) -> Ticket:
        """Model access, then the key's window (429 when over); the window seen goes to the response's headers."""
        model = requests[0].model
        if key is not None and not key.allows(model):
            raise ModelAccessError(model)
        for request in requests:
            request.output.return_token_ids = True  # counts what a disconnected stream generated (not sent out)
        reserve = reservation(requests)
        limits = self.limits(key)
        if key is None or limits is None:
            return Ticket(self, key, model, requests, None, reserve)
        window, store = await self.counters.admit(key.sha256, limits, reserve)
        snapshot = RateLimitSnapshot(limits, window)
        current_key_window().snapshot = snapshot
        if not window.admitted:
            error = RateLimitExceededError(snapshot, model, key.label, reserve)
            self.metrics.rate_limited.labels(key.label, error.kind).inc()
            logger.info("rate limited: key=%s %s", key.label, error.kind)
            raise error
        return Ticket(self, key, model, requests, (limits, window, store), reserve)

    async def peek(self, key: KeyRecord | None) -> RateLimitSnapshot | None:
        limits = self.limits(key)
        if key is None or limits is None:
            return None
        return RateLimitSnapshot(limits, await self.counters.peek(key.sha256, limits))

    def charge(
        self,
        key: KeyRecord | None,
        model: str,
        admission: tuple[RateLimits, WindowState, CounterStore] | None,
        reserved: int,
        answered: bool,
        prompt: int,
        completion: int,
    ) -> None:
        name = key.label if key is not None else ANONYMOUS
        if answered:  # the model label only once the service answered: unknown models add no series
            self.metrics.requests.labels(name, model).inc()
            self.metrics.prompt_tokens.labels(name, model).inc(prompt)
            self.metrics.completion_tokens.labels(name, model).inc(completion)

        async def store() -> None:  # the counter store's part, in a task of its own
            if key is not None and admission is not None:
                limits, window, counters = admission
                await self.counters.correct(counters, key.sha256, limits, window.window, reserved, prompt + completion)
            if answered:
                await self.counters.add_usage([UsageRow(utc_day(), name, model, 1, prompt, completion)])

        self._spawn(store())

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("charging usage failed", exc_info=task.exception())

    async def drain(self) -> None:
        """Wait for the charges still being written (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def aclose(self) -> None:
        await self.drain()
        await self.counters.aclose()
