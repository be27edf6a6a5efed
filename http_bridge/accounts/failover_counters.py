"""The counter store the bridge uses: Redis when a URL is configured, in process otherwise, and the fault policy.

Policy when Redis is down or slow: **fail open to per-replica limits**. Every Redis call has a hard timeout
(`redis_timeout_s`); a failure logs one warning, counts `ortserve_bridge_counter_store_errors_total`, sets
`ortserve_bridge_counter_store_shared` to 0, and for `redis_retry_s` every request uses this replica's in-process
counters (limits hold per replica, so N replicas admit up to N × a key's limit). Usage written meanwhile is kept
in memory and added to Redis by the first write that succeeds, so the daily totals stay whole. The first call after
`redis_retry_s` tries Redis again: recovery needs no restart. Requests never fail, nor wait longer than the
timeout, because of Redis; only the admin's usage read answers 503 while Redis is unreachable.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from http_bridge.accounts.counters import CounterStore, RateLimits, UsageRow, WindowState
from http_bridge.accounts.memory_counters import MemoryCounters
from http_bridge.accounts.redis_counters import RedisCounters
from http_bridge.errors import BridgeError

logger = logging.getLogger(__name__)

T = TypeVar("T")
STORE_ERRORS = (RedisError, OSError, TimeoutError)


class UsageUnavailableError(BridgeError):
    def __init__(self) -> None:
        super().__init__("The usage store (Redis) is unreachable; try again shortly.", status=503, type="server_error")


def open_redis(url: str, timeout_s: float) -> Redis:
    """A client that fails fast: socket timeouts, no retries (the fallback is the retry policy)."""
    client: Redis = Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )
    return client


class StoreMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.errors = Counter(
            "ortserve_bridge_counter_store_errors",
            "Redis calls of rate limits and usage that failed or timed out (the replica used its own counters)",
            ["operation"],
            registry=registry,
        )
        self.shared = Gauge(
            "ortserve_bridge_counter_store_shared",
            "1 while rate limits and usage are shared through Redis, 0 while this replica counts alone",
            registry=registry,
        )


class FailoverCounters:
    """Redis with the fail-open fallback above; without Redis, the in-process counters alone."""

    def __init__(self, redis: Redis | None, timeout_s: float, retry_s: float, metrics: StoreMetrics) -> None:
        self.redis = redis
        self.remote = RedisCounters(redis) if redis is not None else None
        self.local = MemoryCounters()
        self.timeout_s = timeout_s
        self.retry_s = retry_s
        self.metrics = metrics
        self._down_until = 0.0
        self._pending: list[UsageRow] = []  # usage not yet in Redis (written while it was down)
        metrics.shared.set(1 if redis is not None else 0)

    def describe(self) -> str:
        if self.redis is None:
            return "in process (this replica only; set ORTSERVE_BRIDGE_REDIS_URL to share them)"
        kwargs = self.redis.connection_pool.connection_kwargs
        return f"Redis at {kwargs.get('host', kwargs.get('path', '?'))}:{kwargs.get('port', '')} (shared)"

    def _remote_now(self) -> RedisCounters | None:
        if self.remote is None or time.monotonic() < self._down_until:
            return None
        return self.remote

    async def _try(self, operation: str, call: Callable[[], Awaitable[T]]) -> T | None:
        """`call` on Redis within the timeout; None (and the fallback window starts) when it fails."""
        try:
            async with asyncio.timeout(self.timeout_s):
                result = await call()
        except STORE_ERRORS as exc:
            self.metrics.errors.labels(operation).inc()
            if self._down_until == 0.0:
                logger.warning(
                    "Redis unreachable (%s: %s): rate limits and usage are counted by this replica alone; "
                    "retrying Redis every %g s",
                    operation,
                    type(exc).__name__,
                    self.retry_s,
                )
            self._down_until = time.monotonic() + self.retry_s
            self.metrics.shared.set(0)
            return None
        if self._down_until != 0.0:
            logger.warning("Redis reachable again: rate limits and usage are shared again")
            self._down_until = 0.0
            self.metrics.shared.set(1)
        return result

    async def admit(self, key_id: str, limits: RateLimits, reserve: int) -> tuple[WindowState, CounterStore]:
        """The window after admission, and the store that holds the reservation (for `correct`)."""
        remote = self._remote_now()
        if remote is not None:
            state = await self._try("admit", lambda: remote.admit(key_id, limits, reserve))
            if state is not None:
                return state, remote
        return await self.local.admit(key_id, limits, reserve), self.local

    async def peek(self, key_id: str, limits: RateLimits) -> WindowState:
        remote = self._remote_now()
        if remote is not None:
            state = await self._try("peek", lambda: remote.peek(key_id, limits))
            if state is not None:
                return state
        return await self.local.peek(key_id, limits)

    async def correct(
        self, store: CounterStore, key_id: str, limits: RateLimits, window: int, reserved: int, actual: int
    ) -> None:
        if store is self.local:
            await self.local.correct(key_id, limits, window, reserved, actual)
        elif self._remote_now() is not None:  # else dropped: that window's reservation stands in Redis
            await self._try("correct", lambda: store.correct(key_id, limits, window, reserved, actual))

    async def add_usage(self, rows: Sequence[UsageRow]) -> None:
        remote = self._remote_now()
        if remote is None:
            if self.remote is None:
                await self.local.add_usage(rows)
            else:
                self._pending += rows
            return
        batch = [*self._pending, *rows]
        self._pending = []

        async def write() -> bool:  # True: _try's None means failure only
            await remote.add_usage(batch)
            return True

        if await self._try("usage", write) is None:
            # A timeout may have hit after Redis applied the transaction: then these rows count twice
            # (rare, and only around an outage); losing them instead would undercount for sure.
            self._pending = _merge(batch)

    async def usage(self, days: Sequence[str]) -> list[UsageRow]:
        if self.remote is None:
            return await self.local.usage(days)
        remote = self._remote_now()
        rows = await self._try("read_usage", lambda: remote.usage(days)) if remote is not None else None
        if rows is None:
            raise UsageUnavailableError()
        return rows

    async def aclose(self) -> None:
        if self._pending and self.remote is not None:
            self._down_until = 0.0
            await self.add_usage([])
        if self.redis is not None:
            await self.redis.aclose()


def _merge(rows: Sequence[UsageRow]) -> list[UsageRow]:
    """Rows of one (day, key name, model) added together (the pending list stays as small as its keys)."""
    merged: dict[tuple[str, str, str], UsageRow] = {}
    for row in rows:
        key = (row.day, row.key_name, row.model)
        seen = merged.get(key)
        merged[key] = (
            row
            if seen is None
            else replace(
                seen,
                requests=seen.requests + row.requests,
                prompt_tokens=seen.prompt_tokens + row.prompt_tokens,
                completion_tokens=seen.completion_tokens + row.completion_tokens,
            )
        )
    return list(merged.values())
