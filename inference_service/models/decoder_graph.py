"""Build the ONNX graph of a decoder-only transformer (llama, qwen2, qwen3, gemma3) from transcoded GGUF weights.

One builder; the architectures differ only in what DecoderShape and the layer weights say (docs/converter.md):
biases on q/k/v (qwen2), RMSNorm of every q and k head (qwen3, gemma3), norms after attention and FFN (gemma3),
the gate activation, an embedding scale, sliding-window layers with their own rope base (gemma3), and the rotary
layout. I/O follows ONNX Runtime GenAI's decoder layout, so one runner serves our folders and model-builder folders:
  inputs  input_ids [B, S] int64, attention_mask [B, T] int64 (T = past + S),
          past_key_values.{i}.key/value [B, kv_heads, P, head_dim] (P ≥ past; a shared buffer when P > past),
          num_logits_to_keep [] int64 (0 = every position, k = the last k; runners of GenAI folders omit it)
  outputs logits [B, S or k, vocab], present.{i}.key/value
Attention is GroupQueryAttention with rotary inside it. Llama GGUFs keep Q/K rows permuted by llama.cpp for
rotation of adjacent pairs, hence rotary_interleaved=1 there; the others rotate halves (NEOX).

Precision (docs/converter.md): fp32 keeps every GGUF value exact. fp16/bf16 graphs compute activations, norms,
attention and KV in that type (what onnxruntime's CUDA kernels run); MatMulNBits keeps the 4-bit codes with the
GGUF's f16 block scales (exact in fp16, rounded in bf16) and Q4_1's per-block offset 8d + m rounded to the type;
the embedding is a table of the type; the LM head runs in fp32 on the final hidden state cast up, so logits are
fp32 and the head's values exact in every precision.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from inference_service.models.gguf_weights import BlockQuantized, Dense, Weight, dequantize, pack4
from inference_service.models.precision import FP32, ElementType

IR_VERSION = 10  # onnxruntime 1.31 loads at most IR 13; onnx 1.23 would write 14
OPSETS = [helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)]
MS = "com.microsoft"


@dataclass(slots=True, frozen=True)
class DecoderShape:
    """The hyperparameters of a decoder and the small differences between architectures (convert.py reads them)."""

    arch: str
    layers: int
    hidden: int
    ffn: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    context_length: int
    rope_base: float
    rms_eps: float
    rope_interleaved: bool = True  # llama's GGUF rows rotate adjacent pairs; qwen and gemma rotate halves (NEOX)
    activation: str = "silu"  # gate activation of the gated FFN: "silu" (SwiGLU) or "gelu_tanh" (GeGLU)
    qk_norm: bool = False  # RMSNorm over head_dim on every q and k head before rotary (qwen3, gemma3)
    post_norms: bool = False  # RMSNorm on the attention and FFN outputs before the residual add (gemma)
    embed_scale: float = 1.0  # the embedding is multiplied by this (gemma: sqrt(hidden))
    attention_scale: float = 0.0  # 0: 1/sqrt(head_dim)
    rope_scale: float = 1.0  # linear rope scaling: positions divided by this (global layers)
    sliding_window: int = 0  # tokens a local layer attends to, itself included
    local_layers: tuple[int, ...] = ()  # layers with the sliding window
    rope_base_local: float = 10000.0  # rope base of the local layers
    final_softcap: float = 0.0  # logits = cap · tanh(logits / cap) when set


@dataclass(slots=True)
class LayerWeights:
    attn_norm: np.ndarray
    qkv: Weight  # q, k, v stacked along N
    o: Weight
    ffn_norm: np.ndarray
    gate_up: Weight  # gate, up stacked along N
    down: Weight
    qkv_bias: np.ndarray | None = None  # qwen2
    q_norm: np.ndarray | None = None  # [head_dim]
    k_norm: np.ndarray | None = None
    post_attn_norm: np.ndarray | None = None
    post_ffn_norm: np.ndarray | None = None


@dataclass(slots=True)
class DecoderWeights:
    embedding: BlockQuantized | Dense  # [vocab, hidden]; also the LM head when lm_head is None
    layers: list[LayerWeights]
    final_norm: np.ndarray
    lm_head: Weight | None = None
    rope_freq_factors: np.ndarray | None = None  # [head_dim/2]: llama-3's per-frequency divisors (rope_freqs)


class _Builder:
    def __init__(self, accuracy_level: int, precision: ElementType = FP32) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.accuracy_level = accuracy_level
        self.t = precision  # the compute type of activations, norms, attention and KV
        self._count = 0

    def name(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}_{self._count}"

    def init(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(value, order="C"), name))
        return name

    def const(self, name: str, value: np.ndarray, t: ElementType | None = None) -> str:
        """A float initializer in the compute type (or `t`), rounded from its fp32 value."""
        return self.init(name, np.ascontiguousarray(np.asarray(value, np.float32), dtype=(t or self.t).numpy))

    def node(self, op: str, inputs: list[str], n_out: int = 1, domain: str = "", **attrs: Any) -> list[str]:
        base = self.name(op)
        outputs = [f"{base}/out{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op, inputs, outputs, name=base, domain=domain, **attrs))
        return outputs

    def linear(self, x: str, w: Weight, prefix: str, t: ElementType | None = None) -> str:
        """x [..., K] → x·Wᵀ [..., N] in the compute type (or `t`); exact for every transcoded form in fp32."""
        t = t or self.t
        if isinstance(w, BlockQuantized) and w.bits == 8:
            # onnxruntime 1.31's 8-bit MatMulNBits at fp32 accuracy dequantizes per call: 164 ms for the
            # 49152×576 head at M=1 against 6.6 ms for fp32 MatMul on the same (exact) values.
            w = Dense(dequantize(w))
        if isinstance(w, Dense):
            return self.node("MatMul", [x, self.const(f"{prefix}.weight_t", w.weight.T, t)])[0]
        # a wide code's two 4-bit terms are stacked along K: one kernel over [x, x]
        source = x if w.terms == 1 else self.node("Concat", [x] * w.terms, axis=-1)[0]
        scales = self.const(f"{prefix}.scales", w.scales.reshape(-1), t)
        inputs = [source, self.init(f"{prefix}.qweight", w.packed), scales]
        if w.zero_points is not None:
            zp = w.zero_points
            if zp.shape[1] % 2:  # two codes a byte, rows padded to whole bytes
                zp = np.concatenate([zp, np.zeros((w.n, 1), np.uint8)], axis=1)
            inputs.append(self.init(f"{prefix}.zero_points", pack4(zp).reshape(-1)))
        y = self.node(
            "MatMulNBits",
            inputs,
            domain=MS,
            K=w.terms * w.k,
            N=w.n,
            bits=w.bits,
            block_size=w.block,
            accuracy_level=self.accuracy_level,
        )[0]
        if w.offset is None:
            return y
        # the per-block constant: blocksum(x) [..., K/block] · offsetᵀ [K/block, N]
        shape = np.array([0, 0, -1, w.block], np.int64)
        blocks = self.node("Reshape", [x, self.init(f"{prefix}.block_shape", shape)])[0]
        sums = self.node("ReduceSum", [blocks, self.init(f"{prefix}.axes", np.array([-1], np.int64))], keepdims=0)[0]
        corr = self.node("MatMul", [sums, self.const(f"{prefix}.offset_t", w.offset.T, t)])[0]
        return self.node("Add", [y, corr])[0]


def rope_cache(
    shape: DecoderShape, base: float, scale: float = 1.0, freq_factors: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """cos, sin [context, head_dim/2] as llama.cpp's rope computes them: θ = pos / scale · base^(−2i/d) / factor_i."""
    inv = base ** (-np.arange(0, shape.head_dim, 2, dtype=np.float64) / shape.head_dim)
    if freq_factors is not None:
        inv = inv / freq_factors.astype(np.float64)
    angles = np.arange(shape.context_length, dtype=np.float64)[:, None] / scale * inv[None, :]
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def build_decoder(
    shape: DecoderShape, weights: DecoderWeights, accuracy_level: int = 0, precision: ElementType = FP32
) -> onnx.ModelProto:
    b = _Builder(accuracy_level, precision)

    # seqlens_k [B] = valid length − 1, total [] = T, for GroupQueryAttention
    mask_sum = b.node("ReduceSum", ["attention_mask", b.init("axes_1", np.array([1], np.int64))], keepdims=0)[0]
    seqlens = b.node("Cast", [b.node("Sub", [mask_sum, b.init("one", np.array(1, np.int64))])[0]], to=TensorProto.INT32)
    total = b.node("Gather", [b.node("Shape", ["attention_mask"])[0], b.init("idx_1", np.array(1, np.int64))], axis=0)
    total_i32 = b.node("Cast", total, to=TensorProto.INT32)[0]
    cos, sin = rope_cache(shape, shape.rope_base, shape.rope_scale, weights.rope_freq_factors)
    b.const("cos_cache", cos)
    b.const("sin_cache", sin)
    if shape.local_layers:
        cos, sin = rope_cache(shape, shape.rope_base_local)
        b.const("cos_cache_local", cos)
        b.const("sin_cache_local", sin)

    emb = weights.embedding
    if isinstance(emb, Dense) or precision != FP32:  # a table of the compute type (Gather runs on every EP)
        table = b.const("embed.weight", dequantize(emb))
        x = b.node("Gather", [table, "input_ids"], axis=0)[0]
    else:
        qweight = b.init("embed.qweight", emb.packed)
        scales = b.init("embed.scales", emb.scales)
        flat = b.node("Reshape", [qweight, b.init("embed.flat_shape", np.array([emb.n, -1], np.int64))])[0]
        x = b.node(
            "GatherBlockQuantized",
            [flat, "input_ids", scales],
            domain=MS,
            bits=emb.bits,
            block_size=32,
            gather_axis=0,
            quantize_axis=1,
        )[0]
    if shape.embed_scale != 1.0:
        x = b.node("Mul", [x, b.const("embed.scale", np.array(shape.embed_scale, np.float32))])[0]

    residual: str | None = None
    pending = x  # output of the previous block, not yet added to the residual stream
    for i, layer in enumerate(weights.layers):
        p = f"layers.{i}"
        normed, residual = _norm(b, pending, residual, layer.attn_norm, f"{p}.attn_norm", shape.rms_eps)
        qkv = b.linear(normed, layer.qkv, f"{p}.attn.qkv")  # [B, S, (heads + 2·kv_heads)·head_dim], packed
        if layer.qkv_bias is not None:
            qkv = b.node("Add", [qkv, b.const(f"{p}.attn.qkv.bias", layer.qkv_bias)])[0]
        attn = _attention(b, qkv, layer, i, seqlens[0], total_i32, shape)
        pending = b.linear(attn, layer.o, f"{p}.attn.o")
        if layer.post_attn_norm is not None:
            pending = _rms_norm(b, pending, layer.post_attn_norm, f"{p}.post_attn_norm", shape.rms_eps)
        normed, residual = _norm(b, pending, residual, layer.ffn_norm, f"{p}.ffn_norm", shape.rms_eps)
        gate_up = b.linear(normed, layer.gate_up, f"{p}.mlp.gate_up")
        gate, up = b.node(
            "Split", [gate_up, b.init(f"{p}.gu_split", np.array([shape.ffn] * 2, np.int64))], n_out=2, axis=-1
        )
        if shape.activation == "gelu_tanh":
            act = b.node("Gelu", [gate], approximate="tanh")[0]
        else:
            act = b.node("Mul", [gate, b.node("Sigmoid", [gate])[0]])[0]
        pending = b.linear(b.node("Mul", [act, up])[0], layer.down, f"{p}.mlp.down")
        if layer.post_ffn_norm is not None:
            pending = _rms_norm(b, pending, layer.post_ffn_norm, f"{p}.post_ffn_norm", shape.rms_eps)
    final, _ = _norm(b, pending, residual, weights.final_norm, "final_norm", shape.rms_eps)

    # keep the last num_logits_to_keep positions (0 → Slice from 0: all)
    start = b.node("Neg", [b.node("Reshape", ["num_logits_to_keep", b.init("shape_1", np.array([1], np.int64))])[0]])
    kept = b.node(
        "Slice",
        [final, start[0], b.init("int_max", np.array([2**62], np.int64)), b.init("axes_s", np.array([1], np.int64))],
    )[0]
    head = weights.lm_head if weights.lm_head is not None else weights.embedding
    if precision != FP32:  # the head in fp32: fp32 logits, the head's values exact
        kept = b.node("Cast", [kept], to=TensorProto.FLOAT)[0]
    logits = b.linear(kept, head, "lm_head", FP32)
    if shape.final_softcap:  # cap · tanh(logits / cap); the screened head (bounds on a plain MatMul) is then off
        cap = b.const("final_softcap", np.array(shape.final_softcap, np.float32), FP32)
        logits = b.node("Mul", [b.node("Tanh", [b.node("Div", [logits, cap])[0]])[0], cap])[0]
    b.nodes.append(helper.make_node("Identity", [logits], ["logits"], name="logits"))

    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "total_seq"]),
    ]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "kept_seq", shape.vocab])]
    for i in range(shape.layers):
        for kind in ("key", "value"):
            inputs.append(
                helper.make_tensor_value_info(
                    f"past_key_values.{i}.{kind}",
                    precision.onnx_type,
                    ["batch", shape.kv_heads, "past_seq", shape.head_dim],
                )
            )
            outputs.append(
                helper.make_tensor_value_info(
                    f"present.{i}.{kind}",
                    precision.onnx_type,
                    ["batch", shape.kv_heads, "present_seq", shape.head_dim],
                )
            )
    # a required input: onnxruntime's IO binding cannot bind an initializer-backed optional input
    inputs.append(helper.make_tensor_value_info("num_logits_to_keep", TensorProto.INT64, []))

    graph = helper.make_graph(b.nodes, shape.arch, inputs, outputs, b.inits)
    model = helper.make_model(graph, opset_imports=OPSETS, producer_name="ortserve")
    model.ir_version = IR_VERSION
    return model


def _norm(b: _Builder, x: str, residual: str | None, gamma: np.ndarray, prefix: str, eps: float) -> tuple[str, str]:
    """RMSNorm of residual + x; returns (normed, new residual)."""
    g = b.const(f"{prefix}.weight", gamma)
    if residual is None:
        return b.node("SimplifiedLayerNormalization", [x, g], axis=-1, epsilon=eps, stash_type=1)[0], x
    out = b.node("SkipSimplifiedLayerNormalization", [x, residual, g], n_out=4, domain=MS, epsilon=eps)
    return out[0], out[3]


def _rms_norm(b: _Builder, x: str, gamma: np.ndarray, prefix: str, eps: float) -> str:
    return b.node(
        "SimplifiedLayerNormalization", [x, b.const(f"{prefix}.weight", gamma)], axis=-1, epsilon=eps, stash_type=1
    )[0]


def _head_norm(b: _Builder, x: str, heads: int, gamma: np.ndarray, prefix: str, shape: DecoderShape) -> str:
    """RMSNorm of every head: x [B, S, heads·head_dim] → [B, S, heads, head_dim] → normed → back."""
    split = b.node("Reshape", [x, b.init(f"{prefix}.heads", np.array([0, 0, heads, shape.head_dim], np.int64))])[0]
    normed = _rms_norm(b, split, gamma, prefix, shape.rms_eps)
    return b.node("Reshape", [normed, b.init(f"{prefix}.flat", np.array([0, 0, heads * shape.head_dim], np.int64))])[0]


def _attention(
    b: _Builder, qkv: str, layer: LayerWeights, i: int, seqlens: str, total: str, shape: DecoderShape
) -> str:
    """GroupQueryAttention over q, k, v: packed in one input (key and value left empty), or split for QK-norm."""
    name = f"layers.{i}.attn.gqa"
    qkv_inputs = [qkv, "", ""]
    if layer.q_norm is not None and layer.k_norm is not None:
        q_size, kv_size = shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
        sizes = b.init(f"{name}.split", np.array([q_size, kv_size, kv_size], np.int64))
        q, k, v = b.node("Split", [qkv, sizes], n_out=3, axis=-1)
        q = _head_norm(b, q, shape.heads, layer.q_norm, f"layers.{i}.attn.q_norm", shape)
        k = _head_norm(b, k, shape.kv_heads, layer.k_norm, f"layers.{i}.attn.k_norm", shape)
        qkv_inputs = [q, k, v]
    local = i in shape.local_layers
    suffix = "_local" if local else ""
    b.nodes.append(
        helper.make_node(
            "GroupQueryAttention",
            [
                *qkv_inputs,
                f"past_key_values.{i}.key",
                f"past_key_values.{i}.value",
                seqlens,
                total,
                f"cos_cache{suffix}",
                f"sin_cache{suffix}",
            ],
            [f"{name}/out", f"present.{i}.key", f"present.{i}.value"],
            name=name,
            domain=MS,
            num_heads=shape.heads,
            kv_num_heads=shape.kv_heads,
            do_rotary=1,
            rotary_interleaved=int(shape.rope_interleaved),
            local_window_size=shape.sliding_window if local else -1,
            scale=shape.attention_scale or float(1 / np.sqrt(shape.head_dim)),
        )
    )
    return f"{name}/out"
