"""Preallocated KV cache: one buffer per layer and kind, [slots, kv_heads, slot_capacity, head_size].

A sequence owns one slot while it runs; GroupQueryAttention reads and writes the slot in place (past and present
bound to the same memory), so nothing is copied or concatenated per step. New sequences take the lowest free
slot, which keeps the decode batch — slots [0, span) — dense.

The element type is the graph's (read from the session by the runner): fp32 for the CPU graph, fp16/bf16 for
CUDA graphs. On CUDA the buffers live on the device and never travel.

Memory is a token budget, not slots × capacity: on CPU the buffers are reserved address space that becomes
resident only where written (and is handed back when a slot is freed), and the scheduler keeps the tokens of
running sequences within `budget_tokens`. So resident KV memory is at most the budget, whatever the slot count.
"""

from __future__ import annotations

import heapq
import logging
import mmap
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from inference_service.models.precision import FP32, ElementType

logger = logging.getLogger(__name__)


@dataclass(slots=True, frozen=True)
class KVLayout:
    num_layers: int
    num_slots: int
    kv_heads: int
    slot_capacity: int  # tokens per slot
    head_size: int
    dtype: ElementType = FP32  # the graph's past/present element type

    @property
    def slot_bytes(self) -> int:
        return self.kv_heads * self.slot_capacity * self.head_size * self.dtype.itemsize

    @property
    def token_bytes(self) -> int:
        """Bytes one cached token takes: key and value, every layer."""
        return 2 * self.num_layers * self.kv_heads * self.head_size * self.dtype.itemsize

    @property
    def total_bytes(self) -> int:
        return 2 * self.num_layers * self.num_slots * self.slot_bytes


def _lazy_zeros(shape: tuple[int, ...], dtype: ElementType) -> tuple[mmap.mmap, np.ndarray]:
    """Zeroed memory that becomes resident only where written, in 4 KiB pages (bf16 as its uint16 bits).

    np.zeros asks for transparent huge pages: one token written into a slot would then commit 2 MiB per head,
    so a few batched steps made every slot fully resident (6.8 GB peak RSS for 16 slots × 8192 tokens).
    """
    buffer = mmap.mmap(-1, int(np.prod(shape)) * dtype.itemsize, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        buffer.madvise(mmap.MADV_NOHUGEPAGE)
    return buffer, np.frombuffer(buffer, dtype.storage).reshape(shape)


class KVCache:
    def __init__(self, layout: KVLayout, device: str = "cpu", device_id: int = 0, budget_tokens: int = 0) -> None:
        """budget_tokens: tokens the running sequences may hold together; 0 = every slot full."""
        self.layout = layout
        self.device = device
        self.device_id = device_id
        full = layout.num_slots * layout.slot_capacity
        # at least one full slot, so that any sequence that fits a slot can run alone
        self.budget_tokens = min(full, max(budget_tokens, layout.slot_capacity)) if budget_tokens else full
        shape = (layout.num_slots, layout.kv_heads, layout.slot_capacity, layout.head_size)
        self._maps: list[mmap.mmap] = []  # CPU: the mappings behind the buffers, key/value per layer
        self._host: list[np.ndarray] = []  # CPU: the numpy arrays over them
        self._device: list[ort.OrtValue] = []  # CUDA: device buffers, key/value per layer
        self._pointers = [self._alloc(shape) for _ in range(2 * layout.num_layers)]  # key/value per layer
        self._free: list[int] = list(range(layout.num_slots))
        self._used: set[int] = set()
        logger.info(
            "KV cache: %d slots × %d tokens, %d layers, %s on %s; budget %d tokens = %.1f MiB (%.1f KiB per token)%s",
            layout.num_slots,
            layout.slot_capacity,
            layout.num_layers,
            layout.dtype.name,
            device,
            self.budget_tokens,
            self.budget_tokens * layout.token_bytes / 2**20,
            layout.token_bytes / 2**10,
            "" if device == "cpu" else f", {layout.total_bytes / 2**20:.1f} MiB allocated",
        )

    def _alloc(self, shape: tuple[int, ...]) -> int:
        """A buffer of `shape` in the layout's type; returns its address (the cache keeps the memory alive)."""
        if self.device == "cpu":
            buffer, array = _lazy_zeros(shape, self.layout.dtype)
            self._maps.append(buffer)
            self._host.append(array)
            return int(array.ctypes.data)
        element = self.layout.dtype.onnx_type  # bf16 has no numpy type: onnxruntime takes the ONNX type number
        value = ort.OrtValue.ortvalue_from_shape_and_type(shape, element, self.device, self.device_id)
        self._device.append(value)
        return int(value.data_ptr())

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
        self._release(slot)

    def _release(self, slot: int) -> None:
        """CPU: hand the slot's written pages back to the OS (they read as zeros when touched again)."""
        start = slot * self.layout.slot_bytes
        first = -(-start // mmap.PAGESIZE) * mmap.PAGESIZE  # whole pages inside the slot only
        end = (start + self.layout.slot_bytes) // mmap.PAGESIZE * mmap.PAGESIZE
        if end > first:
            for buffer in self._maps:
                buffer.madvise(mmap.MADV_DONTNEED, first, end - first)

    def pointer(self, layer: int, kind: int, first_slot: int) -> int:
        """Address of slot `first_slot` in the layer's key (kind 0) or value (kind 1) buffer."""
        return self._pointers[2 * layer + kind] + first_slot * self.layout.slot_bytes
