"""Tiny random GGUF models (llama, qwen2, qwen3, gemma3) of any block type, written with the ``gguf`` package's
``GGUFWriter``: fixtures for the converter and the float64 reference (``reference_decoder``).

Quantized weights are random raw blocks, written as they are (``add_tensor(..., raw_dtype=qtype)``): every code
bit is random (so every nibble, high bit and packed 6-bit sub-scale of the format is exercised) and only the f16
scale fields are chosen: positive, varying from block to block, and sized so that the dequantized weights have a
standard deviation of about ``WEIGHT_STD``. Where a block has a min (Q4_1, Q5_1, Q2_K, Q4_K, Q5_K) it is set to
centre the codes, so that weights have a mean near 0. ``gguf.quants`` cannot quantize the K-quants or IQ4_NL,
and random codes cover more of a format than quantized Gaussians would.

Shapes respect the block sizes: every row length (hidden, ffn, heads * head_dim) is a multiple of 256 (QK_K).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path

import gguf
import numpy as np

from tests.models.reference_bpe import byte_chars, learn_merges

Q = gguf.GGMLQuantizationType
WEIGHT_STD = 0.05
BLOCK_TYPES = (
    Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0,
    Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K,
    Q.IQ4_NL, Q.F16, Q.F32,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class _ScaleFields:
    d: int  # byte offset of the f16 scale d in a block
    m: int | None = None  # byte offset of the f16 min (Q4_1/Q5_1: w = d*q + m) or dmin (K: w = d*sc*q - dmin*m)
    centre: float = 0.0  # m = -centre * d (Q4_1/Q5_1) or dmin = centre * d (K-quants): weights centred near 0
    subtracted: bool = False  # K-quants subtract dmin * m; Q4_1/Q5_1 add m


# Block layouts (ggml-common.h; gguf.quants' dequantize_blocks splits them in the same order).
_SCALES: dict[gguf.GGMLQuantizationType, _ScaleFields] = {
    Q.Q4_0: _ScaleFields(d=0),  # d, qs[16]
    Q.Q4_1: _ScaleFields(d=0, m=2, centre=7.5),  # d, m, qs[16]
    Q.Q5_0: _ScaleFields(d=0),  # d, qh[4], qs[16]
    Q.Q5_1: _ScaleFields(d=0, m=2, centre=15.5),  # d, m, qh[4], qs[16]
    Q.Q8_0: _ScaleFields(d=0),  # d, qs[32] (int8)
    Q.Q2_K: _ScaleFields(d=80, m=82, centre=1.5, subtracted=True),  # scales[16], qs[64], d, dmin
    Q.Q3_K: _ScaleFields(d=108),  # hmask[32], qs[64], scales[12], d
    Q.Q4_K: _ScaleFields(d=0, m=2, centre=7.5, subtracted=True),  # d, dmin, scales[12], qs[128]
    Q.Q5_K: _ScaleFields(d=0, m=2, centre=15.5, subtracted=True),  # d, dmin, scales[12], qh[32], qs[128]
    Q.Q6_K: _ScaleFields(d=208),  # ql[128], qh[64], scales[16] (int8), d
    Q.IQ4_NL: _ScaleFields(d=0),  # d, qs[16] (indices into a fixed non-linear table)
}


@dataclass(frozen=True, slots=True)
class TinyConfig:
    hidden: int = 256
    n_heads: int = 4
    n_kv_heads: int = 2
    head_dim: int = 64
    ffn: int = 512
    tied: bool = False  # no output.weight: the head is token_embd
    rope_base: float = 10000.0
    rms_eps: float = 1e-6
    qkv_bias: bool = False  # qwen2
    qk_norm: bool = False  # qwen3, gemma3
    rope_freqs: bool = False  # llama-3.1 style rope_freqs.weight
    sliding_window: int = 0  # gemma3
    final_logit_softcapping: float = 0.0  # gemma3; 0: key not written
    context_length: int = 2048


_ARCH_DEFAULTS: dict[str, TinyConfig] = {
    "llama": TinyConfig(),
    "qwen2": TinyConfig(qkv_bias=True, rope_base=1000000.0),
    # key_length (128) != hidden / heads (64)
    "qwen3": TinyConfig(head_dim=128, qk_norm=True, tied=True, rope_base=1000000.0),
    # heads * head_dim (512) != hidden (256); window 4 so that short sequences already slide
    "gemma3": TinyConfig(n_kv_heads=1, head_dim=128, qk_norm=True, tied=True, rope_base=1000000.0, sliding_window=4),
}
_DEFAULT_LAYERS = {"llama": 2, "qwen2": 2, "qwen3": 2, "gemma3": 6}  # gemma3: layer 5 is the first global one

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")  # ids 0, 1 (bos), 2 (eos): control tokens
BOS_ID, EOS_ID = 1, 2
_CORPUS = (
    "The quick brown fox jumps over the lazy dog. The capital of France is Paris, and the capital of Italy is "
    "Rome. In 2024 there were 365 days in the year; in the morning the sun rises in the east. def main(): return 0"
)


def tiny_vocab(n_merges: int = 61) -> tuple[list[str], list[int], list[str]]:
    """A GPT-2 style byte-level BPE vocab: special tokens, the 256 byte tokens, then merges learnt on a fixed
    sentence (deterministic). Returns (tokens, token types, merges "a b")."""
    pieces = re.findall(r" ?[A-Za-z]+| ?[0-9]| ?[^\sA-Za-z0-9]+", _CORPUS)
    merges = learn_merges(pieces, n_merges)
    tokens = [*SPECIAL_TOKENS, *byte_chars(), *(a + b for a, b in merges)]
    types = [int(gguf.TokenType.CONTROL)] * len(SPECIAL_TOKENS) + [int(gguf.TokenType.NORMAL)] * (
        len(tokens) - len(SPECIAL_TOKENS)
    )
    return tokens, types, [f"{a} {b}" for a, b in merges]


def random_weight(
    rng: np.random.Generator, qtype: gguf.GGMLQuantizationType, rows: int, cols: int, std: float = WEIGHT_STD
) -> np.ndarray:
    """A [rows, cols] weight of block type qtype: float32/float16 values, or raw uint8 blocks [rows, bytes]."""
    if qtype == Q.F32:
        return (rng.standard_normal((rows, cols)) * std).astype(np.float32)
    if qtype == Q.F16:
        return (rng.standard_normal((rows, cols)) * std).astype(np.float16)
    if qtype not in _SCALES:
        raise ValueError(f"no random block generator for {qtype.name}")
    block, type_size = gguf.GGML_QUANT_SIZES[qtype]
    if cols % block:
        raise ValueError(f"{qtype.name}: row length {cols} is not a multiple of the block size {block}")
    f = _SCALES[qtype]
    blocks = rng.integers(0, 256, size=(rows * cols // block, type_size), dtype=np.uint8)
    d_unit = rng.uniform(0.5, 1.5, size=(blocks.shape[0],))  # per-block scales differ: block mix-ups show
    m_unit = f.centre * rng.uniform(0.5, 1.5, size=(blocks.shape[0],)) * (1.0 if f.subtracted else -1.0)

    def set_scales(scale: float) -> None:
        blocks[:, f.d : f.d + 2] = (d_unit * scale).astype(np.float16).view(np.uint8).reshape(-1, 2)
        if f.m is not None:
            blocks[:, f.m : f.m + 2] = (m_unit * scale).astype(np.float16).view(np.uint8).reshape(-1, 2)

    set_scales(1.0)  # dequantization is linear in (d, m): measure, then rescale to the wanted std
    unit_std = float(np.std(gguf.quants.dequantize(blocks, qtype)))
    set_scales(std / unit_std)
    return blocks.reshape(rows, -1)


def _types_for(tensor_type: gguf.GGMLQuantizationType | Mapping[str, gguf.GGMLQuantizationType]):  # type: ignore[no-untyped-def]
    if isinstance(tensor_type, Mapping):
        default = tensor_type.get("default", Q.F32)
        return lambda role: tensor_type.get(role, default)
    return lambda role: tensor_type


def write_tiny_gguf(
    path: str | Path,
    arch: str,
    tensor_type: gguf.GGMLQuantizationType | Mapping[str, gguf.GGMLQuantizationType],
    *,
    layers: int | None = None,
    seed: int = 0,
    **overrides: object,
) -> Path:
    """Write a tiny random `arch` model to `path` and return the path.

    tensor_type: the block type of every 2-D weight (token_embd, output and the projections), or a mapping from
    a tensor's role ("token_embd", "output", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up",
    "ffn_down") to its type, with "default" for the others (F32 unless given). Norms, biases and rope_freqs are
    F32. overrides: fields of `TinyConfig` (hidden, n_heads, head_dim, tied, rope_freqs, sliding_window, ...)."""
    if arch not in _ARCH_DEFAULTS:
        raise ValueError(f"unknown architecture {arch!r} (known: {', '.join(_ARCH_DEFAULTS)})")
    known = {f.name for f in fields(TinyConfig)}
    if unknown := set(overrides) - known:
        raise TypeError(f"unknown overrides {sorted(unknown)} (known: {sorted(known)})")
    cfg = replace(_ARCH_DEFAULTS[arch], **overrides)  # type: ignore[arg-type]
    n_layers = _DEFAULT_LAYERS[arch] if layers is None else layers
    type_of = _types_for(tensor_type)
    rng = np.random.default_rng(seed)
    tokens, token_types, merges = tiny_vocab()
    vocab = len(tokens)

    path = Path(path)
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name(f"tiny-{arch}")
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_context_length(cfg.context_length)
    w.add_embedding_length(cfg.hidden)
    w.add_block_count(n_layers)
    w.add_feed_forward_length(cfg.ffn)
    w.add_head_count(cfg.n_heads)
    w.add_head_count_kv(cfg.n_kv_heads)
    w.add_key_length(cfg.head_dim)
    w.add_value_length(cfg.head_dim)
    w.add_rope_dimension_count(cfg.head_dim)
    w.add_rope_freq_base(cfg.rope_base)
    w.add_layer_norm_rms_eps(cfg.rms_eps)
    w.add_vocab_size(vocab)
    if cfg.sliding_window:
        w.add_sliding_window(cfg.sliding_window)
    if cfg.final_logit_softcapping:
        w.add_final_logit_softcapping(cfg.final_logit_softcapping)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types(token_types)
    w.add_token_merges(merges)
    w.add_bos_token_id(BOS_ID)
    w.add_eos_token_id(EOS_ID)
    w.add_add_bos_token(True)

    def matrix(name: str, role: str, rows: int, cols: int) -> None:
        qtype = type_of(role)
        data = random_weight(rng, qtype, rows, cols)
        w.add_tensor(name, data, raw_dtype=qtype if data.dtype == np.uint8 else None)

    def vector(name: str, n: int, mean: float, std: float) -> None:
        w.add_tensor(name, (mean + std * rng.standard_normal(n)).astype(np.float32))

    q_dim, kv_dim = cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim
    matrix("token_embd.weight", "token_embd", vocab, cfg.hidden)
    vector("output_norm.weight", cfg.hidden, 1.0, 0.1)  # gemma3 too: GGUF norm weights already hold 1 + w
    if not cfg.tied:
        matrix("output.weight", "output", vocab, cfg.hidden)
    if cfg.rope_freqs:
        w.add_tensor("rope_freqs.weight", _llama3_freq_factors(cfg.head_dim, cfg.rope_base))
    for i in range(n_layers):
        vector(f"blk.{i}.attn_norm.weight", cfg.hidden, 1.0, 0.1)
        matrix(f"blk.{i}.attn_q.weight", "attn_q", q_dim, cfg.hidden)
        matrix(f"blk.{i}.attn_k.weight", "attn_k", kv_dim, cfg.hidden)
        matrix(f"blk.{i}.attn_v.weight", "attn_v", kv_dim, cfg.hidden)
        matrix(f"blk.{i}.attn_output.weight", "attn_output", cfg.hidden, q_dim)
        if cfg.qkv_bias:
            vector(f"blk.{i}.attn_q.bias", q_dim, 0.0, 0.1)
            vector(f"blk.{i}.attn_k.bias", kv_dim, 0.0, 0.1)
            vector(f"blk.{i}.attn_v.bias", kv_dim, 0.0, 0.1)
        if cfg.qk_norm:
            vector(f"blk.{i}.attn_q_norm.weight", cfg.head_dim, 1.0, 0.1)
            vector(f"blk.{i}.attn_k_norm.weight", cfg.head_dim, 1.0, 0.1)
        vector(f"blk.{i}.ffn_norm.weight", cfg.hidden, 1.0, 0.1)
        matrix(f"blk.{i}.ffn_gate.weight", "ffn_gate", cfg.ffn, cfg.hidden)
        matrix(f"blk.{i}.ffn_up.weight", "ffn_up", cfg.ffn, cfg.hidden)
        matrix(f"blk.{i}.ffn_down.weight", "ffn_down", cfg.hidden, cfg.ffn)
        if arch == "gemma3":
            vector(f"blk.{i}.post_attention_norm.weight", cfg.hidden, 1.0, 0.1)
            vector(f"blk.{i}.post_ffw_norm.weight", cfg.hidden, 1.0, 0.1)

    write_gguf(w)
    return path


def write_gguf(writer: gguf.GGUFWriter) -> None:
    """GGUFWriter's four steps once everything is added: header, metadata, tensors, close."""
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _llama3_freq_factors(n_rot: int, base: float, factor: float = 8.0, low: float = 1.0, high: float = 4.0,
                         original_context: int = 64) -> np.ndarray:  # fmt: skip
    """Llama-3.1 rope_freqs as convert_hf_to_gguf writes them: 1 for short wavelengths, `factor` for long ones,
    smooth between. original_context is tiny so that all three regimes occur at head_dim 64."""
    freqs = base ** (-np.arange(0, n_rot, 2, dtype=np.float64) / n_rot)
    wavelen = 2 * np.pi / freqs
    smooth = (original_context / wavelen - low) / (high - low)
    out = np.where(
        wavelen < original_context / high,
        1.0,
        np.where(wavelen > original_context / low, factor, 1.0 / ((1 - smooth) / factor + smooth)),
    )
    return out.astype(np.float32)
