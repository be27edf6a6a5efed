"""Transcode GGUF tensors into the exact forms ONNX Runtime's quantized kernels take (no re-quantization).

Every linear GGUF block type is, per sub-block b of 16 or 32 weights along the input dimension K,

    w = s_b · c + o_b        (c an integer code, s_b a scale, o_b an optional per-block constant)

  type   block  c (range)            s                o            bytes per 32 weights
  Q4_0   32     q − 8   (−8..7)      d                –            18
  Q4_1   32     q       (0..15)      d                m            20
  Q5_0   32     q − 16  (−16..15)    d                –            22
  Q5_1   32     q       (0..31)      d                m            24
  Q8_0   32     q       (−128..127)  d                –            34
  Q2_K   16     q       (0..3)       d·sc             −dmin·m      10.5
  Q3_K   16     q − 4   (−4..3)      d·(sc − 32)      –            13.75
  Q4_K   32     q       (0..15)      d·sc             −dmin·m      18
  Q5_K   32     q       (0..31)      d·sc             −dmin·m      22
  Q6_K   16     q − 32  (−32..31)    d·sc (sc int8)   –            26.25

onnxruntime's MatMulNBits is fast only at 4 bits (its 2- and 8-bit kernels at fp32 accuracy dequantize per call,
10–40× slower here; docs/converter.md), so codes of up to 16 values are one 4-bit term `s·(c' − zp)` with
c' = c − lo, zp = −lo; wider codes (5, 6, 8 bits) are two 4-bit terms over the same input, c − lo = 16h + l:

    s·c = s·(l − 0) + 16s·(h − zp_h),   zp_h = −lo/16

The two terms are stacked along K (the graph feeds [x, x]) so one MatMulNBits reads both. d·sc, 16s and dmin·m are
exact in fp32 (f16 × a 6-bit integer), so with explicit zero points every weight is exactly the GGUF's; the per-block
constant o_b is `blocksum(x) · oᵀ` after the product. Q4_1 keeps its original form (implicit zero point 8,
o = 8d + m). Q8_0 used as the embedding table stays 8-bit for GatherBlockQuantized. Types with non-linear codebooks
(IQ*) and anything else `gguf.quants` can dequantize become dense fp32.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from gguf import GGMLQuantizationType as QT
from gguf import quants

logger = logging.getLogger(__name__)

BLOCK = 32


class UnsupportedTensorTypeError(ValueError):
    pass


@dataclass(slots=True, frozen=True)
class BlockQuantized:
    """MatMulNBits-ready weight: A·Wᵀ = MatMulNBits([A]·terms, packed, scales, zero_points) + blocksum(A)·offsetᵀ.

    The `terms` 4-bit terms of a wide code are stacked along K: row n holds blocks of term 0, then of term 1.
    """

    bits: int  # 4 for projections; 8 for a Q8_0 embedding table (GatherBlockQuantized)
    n: int
    k: int
    packed: np.ndarray  # uint8 [N, terms·K/block, block·bits/8], MatMulNBits' element order
    scales: np.ndarray  # float32 [N, terms·K/block]
    offset: np.ndarray | None  # float32 [N, K/block]: per-block constant added to every weight
    block: int = BLOCK
    terms: int = 1
    zero_points: np.ndarray | None = None  # uint8 [N, terms·K/block], one code each (None: implicit 2^(bits−1))

    @property
    def blocks(self) -> int:
        """Blocks per row, all terms together."""
        return self.terms * self.k // self.block


@dataclass(slots=True, frozen=True)
class Dense:
    weight: np.ndarray  # float32 [N, K]


Weight = BlockQuantized | Dense


@dataclass(slots=True, frozen=True)
class _Codes:
    """w = scale · code + offset per block; codes are integers in [lo, lo + span)."""

    block: int
    codes: np.ndarray  # int16 [N, K/block, block], natural element order
    scale: np.ndarray  # float32 [N, K/block]
    offset: np.ndarray | None  # float32 [N, K/block]
    lo: int
    span: int


def _f16(b: np.ndarray, at: int) -> np.ndarray:
    return b[..., at : at + 2].copy().view(np.float16)[..., 0].astype(np.float32)


def _blocks(raw: np.ndarray, n: int, k: int, block: int, block_bytes: int) -> np.ndarray:
    if k % block:
        raise UnsupportedTensorTypeError(f"K={k} is not a multiple of {block}")
    return np.ascontiguousarray(raw).view(np.uint8).reshape(n, k // block, block_bytes)


def _nibbles(qs: np.ndarray) -> np.ndarray:
    """ggml's 16 bytes → 32 codes: byte j holds element j (low nibble) and j + 16 (high)."""
    return np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.int16)


def _high_bits(qh: np.ndarray) -> np.ndarray:
    """Q5_0/Q5_1's 4 bytes → bit j of the little-endian uint32 for element j."""
    return np.unpackbits(qh, axis=-1, bitorder="little").astype(np.int16)


def _k_scale_min(scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Q4_K/Q5_K's 12 bytes → 8 six-bit scales and mins (ggml's get_scale_min_k4)."""
    s = scales.reshape(*scales.shape[:-1], 3, 4)
    d, m, md = s[..., 0, :], s[..., 1, :], s[..., 2, :]
    sc = np.concatenate([d & 0x3F, (md & 0x0F) | ((d >> 2) & 0x30)], axis=-1)
    mn = np.concatenate([m & 0x3F, (md >> 4) | ((m >> 2) & 0x30)], axis=-1)
    return sc.astype(np.float32), mn.astype(np.float32)


def _per_sub(super_values: np.ndarray, sub: np.ndarray) -> np.ndarray:
    """[N, supers] × [N, supers, subs] → [N, supers·subs] (products exact in fp32: f16 × ≤ 8-bit integers)."""
    return (super_values[..., None] * sub).reshape(sub.shape[0], -1)


def _decode(raw: np.ndarray, qtype: QT, n: int, k: int) -> _Codes | None:
    """The codes, scales and offsets of a linear block type; None for other types."""
    if qtype == QT.Q4_0:
        b = _blocks(raw, n, k, 32, 18)
        return _Codes(32, _nibbles(b[..., 2:]) - 8, _f16(b, 0), None, -8, 16)
    if qtype == QT.Q4_1:
        b = _blocks(raw, n, k, 32, 20)
        return _Codes(32, _nibbles(b[..., 4:]), _f16(b, 0), _f16(b, 2), 0, 16)
    if qtype in (QT.Q5_0, QT.Q5_1):
        head = 2 if qtype == QT.Q5_0 else 4
        b = _blocks(raw, n, k, 32, head + 20)
        q = _nibbles(b[..., head + 4 :]) | (_high_bits(b[..., head : head + 4]) << 4)
        if qtype == QT.Q5_0:
            return _Codes(32, q - 16, _f16(b, 0), None, -16, 32)
        return _Codes(32, q, _f16(b, 0), _f16(b, 2), 0, 32)
    if qtype == QT.Q8_0:
        b = _blocks(raw, n, k, 32, 34)
        return _Codes(32, b[..., 2:].view(np.int8).astype(np.int16), _f16(b, 0), None, -128, 256)
    if qtype == QT.Q2_K:
        b = _blocks(raw, n, k, 256, 84)
        sc, qs = b[..., :16], b[..., 16:80]
        d, dmin = _f16(b, 80), _f16(b, 82)
        q = (qs.reshape(n, -1, 2, 1, 32) >> np.array([0, 2, 4, 6], np.uint8).reshape(4, 1)) & 3  # [N, S, 2, 4, 32]
        codes = q.reshape(n, -1, 16).astype(np.int16)  # element order: 128-halves, shifts, 32 bytes
        scale = _per_sub(d, (sc & 0x0F).astype(np.float32))
        return _Codes(16, codes, scale, -_per_sub(dmin, (sc >> 4).astype(np.float32)), 0, 4)
    if qtype == QT.Q3_K:
        b = _blocks(raw, n, k, 256, 110)
        hmask, qs, scales, d = b[..., :32], b[..., 32:96], b[..., 96:108], _f16(b, 108)
        low = scales[..., :8].reshape(n, -1, 1, 8) >> np.array([0, 4], np.uint8).reshape(2, 1)
        high = scales[..., 8:].reshape(n, -1, 1, 4) >> np.array([0, 2, 4, 6], np.uint8).reshape(4, 1)
        sc = (low.reshape(n, -1, 16) & 0x0F) | ((high.reshape(n, -1, 16) & 0x03) << 4)
        ql = (qs.reshape(n, -1, 2, 1, 32) >> np.array([0, 2, 4, 6], np.uint8).reshape(4, 1)) & 3
        qh = (hmask.reshape(n, -1, 1, 32) >> np.arange(8, dtype=np.uint8).reshape(8, 1)) & 1
        codes = ql.reshape(n, -1, 16).astype(np.int16) - ((qh.reshape(n, -1, 16) ^ 1).astype(np.int16) << 2)
        return _Codes(16, codes, _per_sub(d, sc.astype(np.float32) - 32), None, -4, 8)
    if qtype in (QT.Q4_K, QT.Q5_K):
        size = 144 if qtype == QT.Q4_K else 176
        b = _blocks(raw, n, k, 256, size)
        d, dmin = _f16(b, 0), _f16(b, 2)
        sc, mn = _k_scale_min(b[..., 4:16])
        qs = b[..., size - 128 :]
        q = (qs.reshape(n, -1, 4, 1, 32) >> np.array([0, 4], np.uint8).reshape(2, 1)) & 0x0F  # [N, S, 4, 2, 32]
        codes = q.reshape(n, -1, 32).astype(np.int16)
        if qtype == QT.Q5_K:
            qh = (b[..., 16:48].reshape(n, -1, 1, 32) >> np.arange(8, dtype=np.uint8).reshape(8, 1)) & 1
            codes |= qh.reshape(n, -1, 32).astype(np.int16) << 4
        return _Codes(32, codes, _per_sub(d, sc), -_per_sub(dmin, mn), 0, 16 if qtype == QT.Q4_K else 32)
    if qtype == QT.Q6_K:
        b = _blocks(raw, n, k, 256, 210)
        sc, d = b[..., 192:208].view(np.int8).astype(np.float32), _f16(b, 208)
        ql = (b[..., :128].reshape(n, -1, 2, 1, 64) >> np.array([0, 4], np.uint8).reshape(2, 1)) & 0x0F
        qh = (b[..., 128:192].reshape(n, -1, 2, 1, 32) >> np.array([0, 2, 4, 6], np.uint8).reshape(4, 1)) & 0x03
        q = ql.reshape(n, -1, 2, 4, 32).astype(np.int16) | (qh.astype(np.int16) << 4)  # [N, S, 2, 4, 32]
        return _Codes(16, q.reshape(n, -1, 16) - 32, _per_sub(d, sc), None, -32, 64)
    return None


def pack4(codes: np.ndarray) -> np.ndarray:
    """4-bit codes 0..15 [..., 2m] → MatMulNBits bytes [..., m]: byte j holds 2j (low) and 2j + 1 (high)."""
    return (codes[..., 0::2] | (codes[..., 1::2] << 4)).astype(np.uint8)


def _to_nbits(c: _Codes, n: int, k: int) -> BlockQuantized:
    shifted = c.codes - c.lo  # 0 .. span − 1
    if c.span <= 16:
        zp = np.full(c.scale.shape, -c.lo, np.uint8)
        implicit = c.lo == -8
        return BlockQuantized(4, n, k, pack4(shifted), c.scale, c.offset, c.block, 1, None if implicit else zp)
    assert c.lo % 16 == 0 and c.span <= 256, (c.lo, c.span)
    low, high = shifted & 0x0F, shifted >> 4
    packed = np.concatenate([pack4(low), pack4(high)], axis=1)  # term 0 blocks, then term 1 blocks
    scales = np.concatenate([c.scale, 16 * c.scale], axis=1)
    zero_points = np.concatenate(
        [np.zeros(c.scale.shape, np.uint8), np.full(c.scale.shape, -c.lo // 16, np.uint8)], axis=1
    )
    return BlockQuantized(4, n, k, packed, scales, c.offset, c.block, 2, zero_points)


def transcode(raw: np.ndarray, qtype: QT, n: int, k: int) -> Weight:
    """A projection weight [N, K] (N rows of K inputs) from the GGUF tensor's bytes/values."""
    if qtype in (QT.F32, QT.F16, QT.BF16):
        values = np.asarray(raw)
        if qtype == QT.BF16:
            values = (values.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
        return Dense(values.astype(np.float32).reshape(n, k))
    try:
        codes = _decode(raw, qtype, n, k)
    except UnsupportedTensorTypeError:
        codes = None  # a row length the block form cannot take: dense below
    if codes is not None and qtype == QT.Q4_1:  # the original form: implicit zero point 8, offset 8d + m
        assert codes.offset is not None
        return BlockQuantized(4, n, k, pack4(codes.codes), codes.scale, 8.0 * codes.scale + codes.offset)
    if codes is not None:
        return _to_nbits(codes, n, k)
    try:
        values = quants.dequantize(np.asarray(raw), qtype)
    except NotImplementedError as e:
        raise UnsupportedTensorTypeError(f"GGUF tensor type {qtype.name} is not supported") from e
    logger.info("%s has no exact 4-bit form: dense fp32 (%d × %d)", qtype.name, n, k)
    return Dense(np.asarray(values, np.float32).reshape(n, k))


def transcode_table(raw: np.ndarray, qtype: QT, n: int, k: int) -> Weight:
    """An embedding table [vocab, hidden]: Q8_0 stays 8-bit (GatherBlockQuantized takes it); others dense."""
    if qtype == QT.Q8_0:
        codes = _decode(raw, qtype, n, k)
        assert codes is not None
        return BlockQuantized(8, n, k, (codes.codes + 128).astype(np.uint8), codes.scale, None)
    w = transcode(raw, qtype, n, k)
    return w if isinstance(w, Dense) else Dense(dequantize(w))


def _unpack4(packed: np.ndarray) -> np.ndarray:
    q = np.empty((*packed.shape[:-1], packed.shape[-1] * 2), np.float64)
    q[..., 0::2] = packed & 0x0F
    q[..., 1::2] = packed >> 4
    return q


def dequantize(w: Weight, rows: int = 8192) -> np.ndarray:
    """float32 [N, K] values of a transcoded weight, summed exactly (float64) and rounded once, as ggml does.

    Computed `rows` rows at a time: a 262,144-row embedding table would otherwise need several GB of temporaries.
    """
    if isinstance(w, Dense):
        return w.weight
    out = np.empty((w.n, w.k), np.float32)
    for start in range(0, w.n, rows):
        part = slice(start, start + rows)
        q = _unpack4(w.packed[part]) if w.bits == 4 else w.packed[part].astype(np.float64)
        zp = np.full(q.shape[:2], 2 ** (w.bits - 1)) if w.zero_points is None else w.zero_points[part]
        terms = (q - zp[..., None]) * w.scales[part, :, None].astype(np.float64)  # [rows, terms·K/block, block]
        values = terms.reshape(q.shape[0], w.terms, -1).sum(axis=1).reshape(q.shape[0], -1, w.block)
        if w.offset is not None:
            values += w.offset[part, :, None]
        out[part] = values.reshape(q.shape[0], w.k)
    return out


def with_block(w: BlockQuantized, block: int, terms: int, offset: bool) -> BlockQuantized:
    """The same values in a smaller block size, more (zero) terms and/or an explicit (zero) offset."""
    assert w.bits == 4 and w.block % block == 0 and terms >= w.terms
    split = w.block // block
    packed = w.packed.reshape(w.n, w.blocks * split, block // 2)
    scales = np.repeat(w.scales, split, axis=1)
    zp = np.full(w.scales.shape, 8, np.uint8) if w.zero_points is None else w.zero_points
    zp = np.repeat(zp, split, axis=1)
    if terms > w.terms:  # a zero term: codes 0, zero point 0, scale 0
        extra = (terms - w.terms) * w.k // block
        packed = np.concatenate([packed, np.zeros((w.n, extra, block // 2), np.uint8)], axis=1)
        scales = np.concatenate([scales, np.zeros((w.n, extra), np.float32)], axis=1)
        zp = np.concatenate([zp, np.zeros((w.n, extra), np.uint8)], axis=1)
    off = w.offset
    if off is not None:
        off = np.repeat(off, split, axis=1)
    elif offset:
        off = np.zeros((w.n, w.k // block), np.float32)
    return BlockQuantized(4, w.n, w.k, packed, scales, off, block, terms, zp)


def stack(parts: list[Weight]) -> Weight:
    """Concatenate weights along N (one fused projection): a common block size, term count and offset."""
    if not all(isinstance(p, BlockQuantized) and p.bits == 4 for p in parts):
        return Dense(np.concatenate([dequantize(p) for p in parts]))
    blocks = [p for p in parts if isinstance(p, BlockQuantized)]
    first = blocks[0]
    same = all(
        (p.block, p.terms, p.offset is None, p.zero_points is None)
        == (first.block, first.terms, first.offset is None, first.zero_points is None)
        for p in blocks
    )
    if not same:
        block = min(p.block for p in blocks)
        terms = max(p.terms for p in blocks)
        offset = any(p.offset is not None for p in blocks)
        blocks = [with_block(p, block, terms, offset) for p in blocks]
        first = blocks[0]

    def cat(arrays: list[np.ndarray | None]) -> np.ndarray | None:
        return None if arrays[0] is None else np.concatenate(arrays)  # type: ignore[arg-type]

    return BlockQuantized(
        4,
        sum(p.n for p in blocks),
        first.k,
        np.concatenate([p.packed for p in blocks]),
        np.concatenate([p.scales for p in blocks]),
        cat([p.offset for p in blocks]),
        first.block,
        first.terms,
        cat([p.zero_points for p in blocks]),
    )
