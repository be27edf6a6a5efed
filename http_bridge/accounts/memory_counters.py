"""The counters of counters.py in process: the one-replica default, and the fallback while Redis is unreachable."""

from __future__ import annotations

import time
from collections.abc import Sequence

from http_bridge.accounts.counters import RateLimits, UsageRow, WindowState


def decide(used_requests: int, used_tokens: int, limits: RateLimits, reserve: int) -> bool:
    """The admission rule (redis_counters.ADMIT is the same in Lua): one more request and `reserve` tokens fit."""
    if limits.rpm is not None and used_requests + 1 > limits.rpm:
        return False
    return limits.tpm is None or used_tokens + reserve <= limits.tpm


class MemoryCounters:
    """The counters of one process (asyncio: no locks needed, no await inside an update)."""

    def __init__(self) -> None:
        self._windows: dict[str, list[int]] = {}  # key id → [window, requests, tokens]
        self._usage: dict[tuple[str, str, str], list[int]] = {}  # (day, name, model) → [requests, prompt, completion]

    def _state(self, key_id: str, limits: RateLimits) -> tuple[list[int], int, int]:
        now_ms = int(time.time() * 1000)
        window = now_ms // limits.window_ms
        state = self._windows.get(key_id)
        if state is None or state[0] != window:
            state = [window, 0, 0]
        return state, window, (window + 1) * limits.window_ms - now_ms

    async def admit(self, key_id: str, limits: RateLimits, reserve: int) -> WindowState:
        state, window, reset_ms = self._state(key_id, limits)
        admitted = decide(state[1], state[2], limits, reserve)
        if admitted:
            state[1] += 1
            state[2] += reserve
            self._windows[key_id] = state
        return WindowState(admitted, state[1], state[2], window, reset_ms)

    async def peek(self, key_id: str, limits: RateLimits) -> WindowState:
        state, window, reset_ms = self._state(key_id, limits)
        return WindowState(False, state[1], state[2], window, reset_ms)

    async def correct(self, key_id: str, limits: RateLimits, window: int, reserved: int, actual: int) -> None:
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
