"""The counters of counters.py in Redis, shared by every bridge replica (redis-py's asyncio client).

Data model (prefix `ortserve:`):
- `ortserve:rl:<sha256 of the key>`: a hash {w: window id, r: requests, t: tokens} of the key's current window,
  expiring after two windows. Each update is one Lua script (atomic; the window comes from Redis' TIME, so replicas
  with skewed clocks still share one window). A stale `w` means the window has rolled over: counts start at 0.
- `ortserve:usage:<YYYY-MM-DD>`: a hash per UTC day, fields `["key name", "model", "requests"|"prompt"|"completion"]`
  (JSON) → HINCRBY totals; kept until an operator deletes them.
Scripts run with EVALSHA and are loaded again after a Redis restart (redis-py's Script does it on NOSCRIPT).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from redis.asyncio import Redis

from http_bridge.accounts.counters import RateLimits, UsageRow, WindowState

PREFIX = "ortserve:"
_KINDS = ("requests", "prompt", "completion")

# KEYS[1] window hash; ARGV window_ms, rpm (-1 = none), tpm (-1 = none), reserve, peek (1 = read only).
# Returns {admitted, requests, tokens, window, reset_ms}. The rule is memory_counters.decide.
ADMIT = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local window_ms = tonumber(ARGV[1])
local rpm, tpm, reserve = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local window = math.floor(now_ms / window_ms)
local state = redis.call('HMGET', KEYS[1], 'w', 'r', 't')
local used_r, used_t = 0, 0
if tonumber(state[1]) == window then
  used_r = tonumber(state[2]) or 0
  used_t = tonumber(state[3]) or 0
end
local ok = 1
if ARGV[5] == '1' then
  ok = 0
elseif (rpm >= 0 and used_r + 1 > rpm) or (tpm >= 0 and used_t + reserve > tpm) then
  ok = 0
else
  used_r = used_r + 1
  used_t = used_t + reserve
  redis.call('HSET', KEYS[1], 'w', window, 'r', used_r, 't', used_t)
  redis.call('PEXPIRE', KEYS[1], 2 * window_ms)
end
return {ok, used_r, used_t, window, (window + 1) * window_ms - now_ms}
"""

# KEYS[1] window hash; ARGV window_ms, admission window, reserved, actual. In the admission window the reservation
# becomes the real usage; once that window is over, only usage beyond the reservation counts, in the current one.
CORRECT = """
local window_ms = tonumber(ARGV[1])
local admitted, reserved, actual = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local now = redis.call('TIME')
local current = math.floor((tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)) / window_ms)
local state = redis.call('HMGET', KEYS[1], 'w', 'r', 't')
local stored = tonumber(state[1])
local used_t = tonumber(state[3]) or 0
if admitted == current then
  if stored ~= current then return 0 end
  used_t = math.max(0, used_t + actual - reserved)
elseif actual > reserved then
  if stored ~= current then
    redis.call('HSET', KEYS[1], 'w', current, 'r', 0)
    used_t = 0
  end
  used_t = used_t + actual - reserved
else
  return 0
end
redis.call('HSET', KEYS[1], 't', used_t)
redis.call('PEXPIRE', KEYS[1], 2 * window_ms)
return used_t
"""


def _limit(value: int | None) -> int:
    return -1 if value is None else value


class RedisCounters:
    """CounterStore on one Redis (or a Sentinel-managed primary); not Redis Cluster (the usage hash is per day)."""

    def __init__(self, client: Redis) -> None:
        self.client = client
        self._admit = client.register_script(ADMIT)
        self._correct = client.register_script(CORRECT)

    async def _window(self, key_id: str, limits: RateLimits, reserve: int, peek: bool) -> WindowState:
        args = [limits.window_ms, _limit(limits.rpm), _limit(limits.tpm), reserve, int(peek)]
        ok, requests, tokens, window, reset_ms = await self._admit(keys=[PREFIX + "rl:" + key_id], args=args)
        return WindowState(bool(ok), int(requests), int(tokens), int(window), int(reset_ms))

    async def admit(self, key_id: str, limits: RateLimits, reserve: int) -> WindowState:
        return await self._window(key_id, limits, reserve, peek=False)

    async def peek(self, key_id: str, limits: RateLimits) -> WindowState:
        return await self._window(key_id, limits, 0, peek=True)

    async def correct(self, key_id: str, limits: RateLimits, window: int, reserved: int, actual: int) -> None:
        await self._correct(keys=[PREFIX + "rl:" + key_id], args=[limits.window_ms, window, reserved, actual])

    async def add_usage(self, rows: Sequence[UsageRow]) -> None:
        async with self.client.pipeline(transaction=True) as pipe:
            for row in rows:
                key = PREFIX + "usage:" + row.day
                counts = (row.requests, row.prompt_tokens, row.completion_tokens)
                for kind, count in zip(_KINDS, counts, strict=True):
                    if count:
                        pipe.hincrby(key, json.dumps([row.key_name, row.model, kind]), count)
            await pipe.execute()

    async def usage(self, days: Sequence[str]) -> list[UsageRow]:
        async with self.client.pipeline(transaction=False) as pipe:
            for day in days:
                pipe.hgetall(PREFIX + "usage:" + day)
            replies = await pipe.execute()
        rows = []
        for day, fields in zip(days, replies, strict=True):
            totals: dict[tuple[str, str], dict[str, int]] = {}
            for field, value in fields.items():
                name, model, kind = json.loads(field)
                totals.setdefault((name, model), dict.fromkeys(_KINDS, 0))[kind] = int(value)
            for (name, model), t in sorted(totals.items()):
                rows.append(UsageRow(day, name, model, t["requests"], t["prompt"], t["completion"]))
        return rows
