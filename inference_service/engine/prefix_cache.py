"""Reuse of prompt KV across requests (CPU).

Most chat requests start alike (the template's default system prompt, a shared instruction). After a prompt is
prefilled, its KV (up to `max_tokens`, in whole blocks) is copied out; a later prompt that shares at least one
block with a stored one gets those positions copied into its slot instead of computing them. Keys are the
token ids themselves, so a match is exact; LRU keeps `max_entries` prompts.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from inference_service.engine.kv_cache import KVCache


@dataclass(slots=True, frozen=True)
class PrefixCacheConfig:
    max_entries: int = 8  # 0 = off
    block: int = 16
    max_tokens: int = 512


def _common_prefix(a: tuple[int, ...], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class PrefixCache:
    def __init__(self, config: PrefixCacheConfig, kv: KVCache) -> None:
        self.config = config
        self.kv = kv
        self._entries: OrderedDict[tuple[int, ...], np.ndarray] = OrderedDict()
        self.hit_tokens = 0
        self.enabled = config.max_entries > 0 and kv.host_accessible

    def restore(self, prompt: list[int], slot: int) -> int:
        """Copy the longest cached block prefix of `prompt` (leaving ≥ 1 token to compute) into `slot`."""
        if not self.enabled:
            return 0
        best_key, best = None, 0
        for key in self._entries:
            common = _common_prefix(key, prompt)
            if common > best:
                best_key, best = key, common
        usable = min(best, len(prompt) - 1) // self.config.block * self.config.block
        if best_key is None or usable == 0:
            return 0
        self._entries.move_to_end(best_key)
        self.kv.write(slot, self._entries[best_key][:, :, :, :usable])
        self.hit_tokens += usable
        return usable

    def store(self, prompt: list[int], slot: int) -> None:
        """Remember the prompt's KV (call once its prompt is fully in the slot)."""
        if not self.enabled:
            return
        length = min(len(prompt), self.config.max_tokens) // self.config.block * self.config.block
        if length == 0:
            return
        key = tuple(prompt[:length])
        if any(_common_prefix(k, prompt) >= length for k in self._entries):
            return  # already covered
        self._entries[key] = self.kv.read(slot, length)
        while len(self._entries) > self.config.max_entries:
            self._entries.popitem(last=False)
