"""Transcode GGUF tensors into the exact forms ONNX Runtime's quantized kernels take (no re-quantization).

ggml blocks hold 32 weights along the input dimension K (row-major [N, K] rows, N = output features):
  Q4_0: d:f16, qs[16]        w = d·(q − 8)
  Q4_1: d:f16, m:f16, qs[16] w = d·q + m = d·(q − 8) + (8d + m)
  Q8_0: d:f16, qs:i8[32]     w = d·q
Nibble order in ggml: byte j holds element j (low) and j + 16 (high). MatMulNBits wants byte j to hold
elements 2j (low) and 2j + 1 (high), and an implicit zero point of 8 (4-bit) or 128 (8-bit).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from gguf import GGMLQuantizationType as QT

BLOCK = 32


class UnsupportedTensorTypeError(ValueError):
    pass


@dataclass(slots=True, frozen=True)
class BlockQuantized:
    """MatMulNBits-ready weight: A·Wᵀ = MatMulNBits(A, packed, scales) + blocksum(A)·offsetᵀ (when offset)."""

    bits: int
    n: int
    k: int
    packed: np.ndarray  # uint8 [N, K/32, 32·bits/8]
    scales: np.ndarray  # float32 [N, K/32]
    offset: np.ndarray | None  # float32 [N, K/32]: per-block constant added to every weight (Q4_1's 8d + m)


@dataclass(slots=True, frozen=True)
class Dense:
    weight: np.ndarray  # float32 [N, K]


Weight = BlockQuantized | Dense


def _blocks(raw: np.ndarray, n: int, k: int, block_bytes: int) -> np.ndarray:
    if k % BLOCK:
        raise UnsupportedTensorTypeError(f"K={k} is not a multiple of {BLOCK}")
    return np.ascontiguousarray(raw).reshape(n, k // BLOCK, block_bytes)


def _f16(blocks: np.ndarray, at: int) -> np.ndarray:
    return blocks[..., at : at + 2].copy().view(np.float16)[..., 0].astype(np.float32)


def _nibbles_ggml_to_nbits(qs: np.ndarray) -> np.ndarray:
    """qs: uint8 [..., 16] in ggml order → uint8 [..., 16] in MatMulNBits order."""
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=-1)  # [..., 32] element order
    return (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)


def transcode(raw: np.ndarray, qtype: QT, n: int, k: int) -> Weight:
    """raw: the GGUF tensor bytes/values for a [N, K] weight (N rows of K inputs)."""
    if qtype == QT.Q4_1:
        b = _blocks(raw, n, k, 20)
        d, m = _f16(b, 0), _f16(b, 2)
        return BlockQuantized(4, n, k, _nibbles_ggml_to_nbits(b[..., 4:]), d, 8.0 * d + m)
    if qtype == QT.Q4_0:
        b = _blocks(raw, n, k, 18)
        return BlockQuantized(4, n, k, _nibbles_ggml_to_nbits(b[..., 2:]), _f16(b, 0), None)
    if qtype == QT.Q8_0:
        b = _blocks(raw, n, k, 34)
        q = (b[..., 2:].view(np.int8).astype(np.int16) + 128).astype(np.uint8)
        return BlockQuantized(8, n, k, q, _f16(b, 0), None)
    if qtype in (QT.F32, QT.F16, QT.BF16):
        values = np.asarray(raw)
        if qtype == QT.BF16:
            values = (values.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
        return Dense(values.astype(np.float32).reshape(n, k))
    raise UnsupportedTensorTypeError(
        f"GGUF tensor type {qtype.name} is not supported (supported: Q4_0, Q4_1, Q8_0, F16, BF16, F32)"
    )


def dequantize(w: Weight) -> np.ndarray:
    """float32 [N, K] reference values of a transcoded weight (for tests and dense fallbacks)."""
    if isinstance(w, Dense):
        return w.weight
    if w.bits == 4:
        q = np.empty((w.n, w.k // BLOCK, BLOCK), np.float32)
        q[..., 0::2] = w.packed & 0x0F
        q[..., 1::2] = w.packed >> 4
        q -= 8
    else:
        q = w.packed.astype(np.float32) - 128
    out = q * w.scales[..., None]
    if w.offset is not None:
        out += w.offset[..., None]
    return out.reshape(w.n, w.k)
