"""Rate-limit windows and usage counters: the types and the store protocol (the stores: memory_counters.py,
redis_counters.py, and failover_counters.py, which the bridge uses).

A key's limits hold per fixed window of `window_ms` aligned to the epoch (window id = now // window_ms), so every
replica (and Redis, whose clock decides there) agrees on when a window starts and resets. A window holds the
requests admitted in it and the tokens they reserved, corrected to their real usage when they end.
memory_counters.py holds them in process (the one-replica default and the fallback while Redis is unreachable),
redis_counters.py in Redis (Lua scripts), shared by every replica.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Per window; None = unlimited."""

    rpm: int | None
    tpm: int | None
    window_ms: int


@dataclass(frozen=True, slots=True)
class WindowState:
    admitted: bool
    requests: int  # used in the window, this request included when admitted
    tokens: int
    window: int
    reset_ms: int  # until the window ends


@dataclass(frozen=True, slots=True)
class UsageRow:
    day: str  # YYYY-MM-DD, UTC
    key_name: str
    model: str
    requests: int
    prompt_tokens: int
    completion_tokens: int


def utc_day(now: float | None = None) -> str:
    return dt.datetime.fromtimestamp(time.time() if now is None else now, dt.UTC).date().isoformat()


class CounterStore(Protocol):
    async def admit(self, key_id: str, limits: RateLimits, reserve: int) -> WindowState: ...

    async def peek(self, key_id: str, limits: RateLimits) -> WindowState: ...

    async def correct(self, key_id: str, limits: RateLimits, window: int, reserved: int, actual: int) -> None: ...

    async def add_usage(self, rows: Sequence[UsageRow]) -> None: ...

    async def usage(self, days: Sequence[str]) -> list[UsageRow]: ...
