"""Preallocated KV cache: one buffer per layer and kind, [slots, kv_heads, slot_capacity, head_size].

A sequence owns one slot for its life; GroupQueryAttention reads and writes the slot in place (past and present
bound to the same memory), so nothing is copied or concatenated per step. New sequences take the lowest free
slot, which keeps the decode batch — slots [0, span) — dense.
"""

from __future__ import annotations

import heapq
import logging
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

logger = logging.getLogger(__name__)


@dataclass(slots=True, frozen=True)
class KVLayout:
    num_layers: int
    num_slots: int
    kv_heads: int
    slot_capacity: int  # tokens per slot
    head_size: int

    @property
    def slot_bytes(self) -> int:
        return self.kv_heads * self.slot_capacity * self.head_size * 4

    @property
    def total_bytes(self) -> int:
        return 2 * self.num_layers * self.num_slots * self.slot_bytes


class KVCache:
    def __init__(self, layout: KVLayout, device: str = "cpu", device_id: int = 0) -> None:
        self.layout = layout
        self.device = device
        self.device_id = device_id
        shape = (layout.num_slots, layout.kv_heads, layout.slot_capacity, layout.head_size)
        # On CPU, untouched pages of np.zeros stay unmapped: resident memory grows with tokens actually cached.
        self._buffers: list[tuple[ort.OrtValue, ort.OrtValue]] = [
            (self._alloc(shape), self._alloc(shape)) for _ in range(layout.num_layers)
        ]
        self._free: list[int] = list(range(layout.num_slots))
        self._used: set[int] = set()
        logger.info(
            "KV cache: %d slots × %d tokens, %d layers, %.1f MiB reserved on %s",
            layout.num_slots,
            layout.slot_capacity,
            layout.num_layers,
            layout.total_bytes / 2**20,
            device,
        )

    def _alloc(self, shape: tuple[int, ...]) -> ort.OrtValue:
        if self.device == "cpu":
            return ort.OrtValue.ortvalue_from_numpy(np.zeros(shape, np.float32))
        return ort.OrtValue.ortvalue_from_shape_and_type(shape, np.float32, self.device, self.device_id)

    @property
    def num_free(self) -> int:
        return len(self._free)

    def can_allocate(self) -> bool:
        return bool(self._free)

    def allocate(self) -> int:
        slot = heapq.heappop(self._free)
        self._used.add(slot)
        return slot

    def free(self, slot: int) -> None:
        self._used.remove(slot)
        heapq.heappush(self._free, slot)

    def pointer(self, layer: int, kind: int, first_slot: int) -> int:
        """Address of slot `first_slot` in the layer's key (kind 0) or value (kind 1) buffer."""
        return int(self._buffers[layer][kind].data_ptr()) + first_slot * self.layout.slot_bytes
