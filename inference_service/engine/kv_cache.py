"""Preallocated KV cache: one buffer per layer and kind, [slots, kv_heads, slot_capacity, head_size].

A sequence owns one slot for its life; GroupQueryAttention reads and writes the slot in place (past and present
bound to the same memory), so nothing is copied or concatenated per step. New sequences take the lowest free
slot, which keeps the decode batch — slots [0, span) — dense.
"""

from __future__ import annotations

import heapq
import logging
import mmap
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


def _lazy_zeros(shape: tuple[int, ...]) -> np.ndarray:
    """Zeroed float32 memory that becomes resident only where written, in 4 KiB pages.

    np.zeros asks for transparent huge pages: one token written into a slot would then commit 2 MiB per head,
    so a few batched steps made every slot fully resident (6.8 GB peak RSS for 16 slots × 8192 tokens).
    """
    buffer = mmap.mmap(-1, int(np.prod(shape)) * 4, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        buffer.madvise(mmap.MADV_NOHUGEPAGE)
    return np.frombuffer(buffer, np.float32).reshape(shape)


class KVCache:
    def __init__(self, layout: KVLayout, device: str = "cpu", device_id: int = 0) -> None:
        self.layout = layout
        self.device = device
        self.device_id = device_id
        shape = (layout.num_slots, layout.kv_heads, layout.slot_capacity, layout.head_size)
        # On CPU, untouched pages of np.zeros stay unmapped: resident memory grows with tokens actually cached.
        self._host: list[np.ndarray] = []  # CPU: the numpy arrays behind the buffers, key/value per layer
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
            array = _lazy_zeros(shape)
            self._host.append(array)  # the OrtValue borrows this memory: keep it alive and addressable
            return ort.OrtValue.ortvalue_from_numpy(array)
        return ort.OrtValue.ortvalue_from_shape_and_type(shape, np.float32, self.device, self.device_id)

    @property
    def host_accessible(self) -> bool:
        return self.device == "cpu"

    def read(self, slot: int, length: int) -> np.ndarray:
        """Copy of the slot's first `length` positions: [layers, 2, kv_heads, length, head_size] (CPU only)."""
        return np.stack([np.stack([a[slot, :, :length] for a in pair]) for pair in self._host_pairs()])

    def write(self, slot: int, values: np.ndarray) -> None:
        """Inverse of read(): fill the slot's first positions from `values`."""
        length = values.shape[3]
        for layer, pair in enumerate(self._host_pairs()):
            for kind, array in enumerate(pair):
                array[slot, :, :length] = values[layer, kind]

    def _host_pairs(self) -> list[tuple[np.ndarray, np.ndarray]]:
        assert self.host_accessible
        return [(self._host[2 * i], self._host[2 * i + 1]) for i in range(self.layout.num_layers)]

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
