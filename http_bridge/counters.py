"""Rate-limit windows and usage counters: the types, the store protocol, and the in-process store.

A key's limits hold per fixed window of `window_ms` aligned to the epoch (window id = now // window_ms), so every
replica (and Redis, whose clock decides there) agrees on when a window starts and resets. A window holds the
requests admitted in it and the tokens they reserved, corrected to their real usage when they end.
redis_counters.py is the same contract on Redis (Lua scripts); this module's MemoryCounters is the one-replica
default and the fallback while Redis is unreachable.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Limits:
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
    async def admit(self, key_id: str, limits: Limits, reserve: int) -> WindowState: ...

    async def peek(self, key_id: str, limits: Limits) -> WindowState: ...

    async def correct(self, key_id: str, limits: Limits, window: int, reserved: int, actual: int) -> None: ...

    async def add_usage(self, rows: Sequence[UsageRow]) -> None: ...

    async def usage(self, days: Sequence[str]) -> list[UsageRow]: ...


def decide(used_requests: int, used_tokens: int, limits: Limits, reserve: int) -> bool:
    """The admission rule (redis_counters.ADMIT is the same in Lua): one more request and `reserve` tokens fit."""
    if limits.rpm is not None and used_requests + 1 > limits.rpm:
        return False
    return limits.tpm is None or used_tokens + reserve <= limits.tpm


class MemoryCounters:
    """The counters of one process (asyncio: no locks needed, no await inside an update)."""

    def __init__(self) -> None:
        self._windows: dict[str, list[int]] = {}  # key id → [window, requests, tokens]
        self._usage: dict[tuple[str, str, str], list[int]] = {}  # (day, name, model) → [requests, prompt, completion]

    def _state(self, key_id: str, limits: Limits) -> tuple[list[int], int, int]:
        now_ms = int(time.time() * 1000)
        window = now_ms // limits.window_ms
        state = self._windows.get(key_id)
        if state is None or state[0] != window:
            state = [window, 0, 0]
        return state, window, (window + 1) * limits.window_ms - now_ms

    async def admit(self, key_id: str, limits: Limits, reserve: int) -> WindowState:
        state, window, reset_ms = self._state(key_id, limits)
        admitted = decide(state[1], state[2], limits, reserve)
        if admitted:
            state[1] += 1
            state[2] += reserve
            self._windows[key_id] = state
        return WindowState(admitted, state[1], state[2], window, reset_ms)

    async def peek(self, key_id: str, limits: Limits) -> WindowState:
        state, window, reset_ms = self._state(key_id, limits)
        return WindowState(False, state[1], state[2], window, reset_ms)

    async def correct(self, key_id: str, limits: Limits, window: int, reserved: int, actual: int) -> None:
        state, current, _ = self._state(key_id, limits)
        if window == current:
            state[2] = max(0, state[2] + actual - reserved)
        elif actual > reserved:  # the admission window is over; what its reservation did not cover counts now
            state[2] += actual - reserved
        else:
            return
        self._windows[key_id] = state

    async def add_usage(self, rows: Sequence[UsageRow]) -> None:
        for row in rows:
            counts = self._usage.setdefault((row.day, row.key_name, row.model), [0, 0, 0])
            counts[0] += row.requests
            counts[1] += row.prompt_tokens
            counts[2] += row.completion_tokens

    async def usage(self, days: Sequence[str]) -> list[UsageRow]:
        wanted = set(days)
        return [
            UsageRow(day, name, model, *counts)
            for (day, name, model), counts in sorted(self._usage.items())
            if day in wanted
        ]
