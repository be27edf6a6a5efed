"""Scheduler rules that need no engine core."""

from __future__ import annotations

from typing import Any, cast

from inference_service.engine.scheduler import PrefillChunk, group_prefill


def test_group_prefill_rules() -> None:
    def chunk(slot: int, tokens: int, cached: int = 0) -> PrefillChunk:
        seq = cast(Any, type("S", (), {"slot": slot, "num_cached": cached})())
        return PrefillChunk(seq, tokens)

    groups = group_prefill([chunk(0, 10), chunk(1, 9), chunk(3, 10), chunk(4, 10, cached=5), chunk(5, 10)])
    assert [[c.seq.slot for c in g] for g in groups] == [[0, 1], [3], [4], [5]]  # gap, cached context
    uneven = group_prefill([chunk(0, 100), chunk(1, 10)])
    assert len(uneven) == 2  # 200 padded rows for 110 real tokens: not worth it
