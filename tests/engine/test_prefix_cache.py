from __future__ import annotations

import numpy as np

from inference_service.engine.kv_cache import KVCache, KVLayout
from inference_service.engine.prefix_cache import PrefixCache, PrefixCacheConfig


def make(entries: int = 2) -> tuple[PrefixCache, KVCache]:
    kv = KVCache(KVLayout(num_layers=2, num_slots=3, kv_heads=1, slot_capacity=64, head_size=2))
    rng = np.random.default_rng(0)
    kv.write(0, rng.standard_normal((2, 2, 1, 64, 2)).astype(np.float32))
    return PrefixCache(PrefixCacheConfig(max_entries=entries, block=16, max_tokens=48), kv), kv


def test_restores_whole_blocks_of_the_shared_prefix() -> None:
    cache, kv = make()
    prompt = list(range(40))
    cache.store(prompt, 0)
    other = list(range(20)) + [999] * 10  # shares 20 tokens → one block of 16
    assert cache.restore(other, 1) == 16
    assert np.array_equal(kv.read(1, 16), kv.read(0, 16))
    assert not np.array_equal(kv.read(1, 17), kv.read(0, 17))
    assert cache.hit_tokens == 16


def test_keeps_one_token_to_compute_and_ignores_short_matches() -> None:
    cache, _ = make()
    cache.store(list(range(32)), 0)
    assert cache.restore(list(range(32)), 1) == 16  # 31 usable → one block
    assert cache.restore([*range(10), 5, 5], 1) == 0
    assert cache.restore([7] * 40, 1) == 0


def test_lru_eviction_and_off_switch() -> None:
    cache, _ = make(entries=1)
    cache.store(list(range(32)), 0)
    cache.store([9] * 32, 0)
    assert cache.restore(list(range(33)), 1) == 0  # evicted
    assert cache.restore([9] * 33, 1) == 32
    off, _ = make(entries=0)
    off.store(list(range(32)), 0)
    assert off.restore(list(range(33)), 1) == 0
