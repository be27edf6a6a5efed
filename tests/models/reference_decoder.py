"""An independent float64 numpy forward pass of a decoder-only GGUF (llama, qwen2, qwen3, gemma3), used to prove
the GGUF → ONNX converter.

Nothing here is shared with ``inference_service.models``: weights are dequantized by the ``gguf`` package itself
(``gguf.quants.dequantize``) and the math follows llama.cpp's graphs (src/models/{llama,qwen2,qwen3,gemma3}.cpp,
hparams from src/llama-model.cpp), written out plainly:

    h = token_embd[ids]                               (gemma3: * sqrtf(hidden), the fp32 constant)
    for each layer:
        x = rms_norm(h) * attn_norm
        q, k, v = x @ Wq.T (+ bq), x @ Wk.T (+ bk), x @ Wv.T (+ bv)     (GGUF tensors are [out, in])
        q, k = rms_norm(q) * q_norm, rms_norm(k) * k_norm          (qwen3, gemma3: per head, over head_dim)
        q, k = rope(q), rope(k)
        a = attention(q, k, v) @ Wo.T (+ bo)          (causal; gemma3 local layers: sliding window)
        h = h + a                                     (gemma3: h + rms_norm(a) * post_attention_norm)
        x = rms_norm(h) * ffn_norm
        f = (act(x @ Wgate.T) * (x @ Wup.T)) @ Wdown.T    (act: silu; gemma3: tanh-approximated gelu)
        h = h + f                                     (gemma3: h + rms_norm(f) * post_ffw_norm)
    logits = (rms_norm(h) * output_norm) @ output.T   (no output.weight: tied to token_embd; + output.bias)
    gemma3 only: logits = c * tanh(logits / c) when final_logit_softcapping c is set

RoPE (ggml_rope_ext): the angle of pair i at position p is freq_scale * p * base^(-2i/n_rot) / freq_factor[i].
llama uses the "normal" mode, which rotates ADJACENT pairs (x[2i], x[2i+1]); llama.cpp's converter stores the
rows of attn_q / attn_k permuted so that this equals Hugging Face's rotate-half on the original weights, so the
GGUF weights are used as they are. qwen2, qwen3 and gemma3 use the NEOX mode, pairs (x[i], x[i + n_rot/2]), on
unpermuted weights. Dimensions past n_rot are not rotated. freq_factor is ``rope_freqs.weight`` (llama-3.1 style,
llama only; 1 elsewhere).

gemma3 (llama-model.cpp, LLM_ARCH_GEMMA3): layer il is local (sliding window) when il % 6 < 5, so every 6th layer
is global; local layers use rope base 10000 and freq_scale 1, global ones the GGUF's base and scale; a query at
position p sees keys at positions p - window < pos <= p (llama_hparams::is_masked_swa, STANDARD: masked when
p_q - p_k >= n_swa); queries are scaled by 1/sqrt(head_dim) (1/sqrt(hidden/heads) for the 62-layer 27B). The
norm weights are used as stored: convert_hf_to_gguf.py already added Gemma's "1 +" to every norm weight.

Everything is computed in float64 (the weights are the exact fp32 dequantized values, upcast), so this reference
is more accurate than any fp32 implementation under test.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Self

import gguf
import numpy as np

_DTYPE = np.float64
ARCHS = ("llama", "qwen2", "qwen3", "gemma3")
_NEOX_ARCHS = frozenset({"qwen2", "qwen3", "gemma3"})  # llama.cpp llama_model_rope_type(): NEOX; llama: NORM
_GEMMA3_SWA_PATTERN = 6  # hparams.set_swa_pattern(6): il % 6 < 5 is a sliding-window layer
_GEMMA3_ROPE_BASE_SWA = 10000.0  # hparams.rope_freq_base_train_swa for gemma3 (the GGUF key is not read)


@dataclass(frozen=True, slots=True)
class DecoderHParams:
    arch: str
    n_layers: int
    hidden: int
    n_heads: int
    n_kv_heads: int
    head_dim: int  # key/query head size ({arch}.attention.key_length, else hidden / heads)
    head_dim_v: int  # value head size ({arch}.attention.value_length, else hidden / heads)
    n_rot: int  # rotated dimensions per head ({arch}.rope.dimension_count, else head_dim)
    rope_base: float
    rope_scale: float  # freq_scale = 1 / rope.scaling.factor (linear scaling)
    rope_neox: bool
    rms_eps: float
    vocab: int
    attn_scale: float  # multiplies q·k
    embed_scale: float  # multiplies the looked-up embeddings (gemma3: sqrtf(hidden))
    final_softcap: float  # 0: none
    sliding_window: int  # 0: none
    swa_layers: tuple[bool, ...]  # per layer: local (sliding window, swa rope) or global
    rope_base_swa: float


@dataclass(frozen=True, slots=True)
class DecoderLayer:
    attn_norm: np.ndarray  # [hidden]
    wq: np.ndarray  # [n_heads * head_dim, hidden]
    wk: np.ndarray  # [n_kv_heads * head_dim, hidden]
    wv: np.ndarray  # [n_kv_heads * head_dim_v, hidden]
    wo: np.ndarray  # [hidden, n_heads * head_dim_v]
    ffn_norm: np.ndarray  # [hidden]
    w_gate: np.ndarray  # [ffn, hidden]
    w_up: np.ndarray  # [ffn, hidden]
    w_down: np.ndarray  # [hidden, ffn]
    bq: np.ndarray | None = None  # qwen2 (and any file that has them): [n_heads * head_dim]
    bk: np.ndarray | None = None
    bv: np.ndarray | None = None
    bo: np.ndarray | None = None  # [hidden]
    q_norm: np.ndarray | None = None  # qwen3, gemma3: [head_dim]
    k_norm: np.ndarray | None = None
    post_attn_norm: np.ndarray | None = None  # gemma3: [hidden]
    post_ffn_norm: np.ndarray | None = None


def _dequantize(tensor: gguf.gguf_reader.ReaderTensor) -> np.ndarray:
    # gguf's own dequantizer; the result has numpy shape [out, in] (GGUF lists dims innermost-first).
    w = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
    return np.ascontiguousarray(w, dtype=_DTYPE).reshape([int(d) for d in reversed(tensor.shape)])


def _hparams(reader: gguf.GGUFReader, n_tokens_embd: int) -> DecoderHParams:
    def field(key: str, default: Any = None) -> Any:  # GGUF metadata: a number, a string or a list
        f = reader.fields.get(key)
        return default if f is None else f.contents()

    arch = str(field("general.architecture"))
    if arch not in ARCHS:
        raise ValueError(f"architecture {arch!r} is not one of {ARCHS}")
    n_layers = int(field(f"{arch}.block_count"))
    hidden = int(field(f"{arch}.embedding_length"))
    n_heads = int(field(f"{arch}.attention.head_count"))
    head_dim = int(field(f"{arch}.attention.key_length", hidden // n_heads))
    scaling_type = field(f"{arch}.rope.scaling.type", "linear")
    if scaling_type not in ("linear", "none"):
        raise NotImplementedError(f"rope scaling {scaling_type!r}")
    factor = float(field(f"{arch}.rope.scaling.factor", 0.0))
    swa = int(field(f"{arch}.attention.sliding_window", 0)) if arch == "gemma3" else 0
    if arch == "gemma3":
        # llama-model.cpp: the 27B (62 layers) scales by hidden / heads, the others by the head size
        attn_scale = 1.0 / np.sqrt(hidden // n_heads if n_layers == 62 else head_dim)
        embed_scale = float(np.sqrt(np.float32(hidden)))  # ggml_scale(inpL, sqrtf(n_embd)): the fp32 constant
    else:
        attn_scale, embed_scale = 1.0 / np.sqrt(head_dim), 1.0
    return DecoderHParams(
        arch=arch,
        n_layers=n_layers,
        hidden=hidden,
        n_heads=n_heads,
        n_kv_heads=int(field(f"{arch}.attention.head_count_kv", n_heads)),
        head_dim=head_dim,
        head_dim_v=int(field(f"{arch}.attention.value_length", hidden // n_heads)),
        n_rot=int(field(f"{arch}.rope.dimension_count", head_dim)),
        rope_base=float(field(f"{arch}.rope.freq_base", 10000.0)),
        rope_scale=1.0 / factor if factor else 1.0,
        rope_neox=arch in _NEOX_ARCHS,
        rms_eps=float(field(f"{arch}.attention.layer_norm_rms_epsilon")),
        vocab=int(field(f"{arch}.vocab_size", n_tokens_embd)),
        attn_scale=float(attn_scale),
        embed_scale=embed_scale,
        final_softcap=float(field(f"{arch}.final_logit_softcapping", 0.0)) if arch == "gemma3" else 0.0,
        sliding_window=swa,
        swa_layers=tuple(swa > 0 and il % _GEMMA3_SWA_PATTERN < _GEMMA3_SWA_PATTERN - 1 for il in range(n_layers)),
        rope_base_swa=_GEMMA3_ROPE_BASE_SWA,
    )


class ReferenceDecoder:
    """Dequantized weights of a decoder GGUF and a plain float64 forward pass over one sequence."""

    def __init__(
        self,
        hp: DecoderHParams,
        token_embd: np.ndarray,
        layers: list[DecoderLayer],
        output_norm: np.ndarray,
        lm_head: np.ndarray,
        lm_head_bias: np.ndarray | None = None,
        rope_freq_factors: np.ndarray | None = None,
    ) -> None:
        self.hp = hp
        self.token_embd = token_embd  # [vocab, hidden]
        self.layers = layers
        self.output_norm = output_norm  # [hidden]
        self.lm_head = lm_head  # [vocab, hidden]; the same array as token_embd when tied
        self.lm_head_bias = lm_head_bias  # [vocab]
        self.rope_freq_factors = rope_freq_factors  # [n_rot / 2]

    @classmethod
    def from_gguf(cls, path: str | Path) -> Self:
        reader = gguf.GGUFReader(str(path))
        t = {tensor.name: tensor for tensor in reader.tensors}
        unused = set(t)

        def take(name: str) -> np.ndarray:
            unused.discard(name)
            return _dequantize(t[name])

        def maybe(name: str) -> np.ndarray | None:
            return take(name) if name in t else None

        token_embd = take("token_embd.weight")
        hp = _hparams(reader, token_embd.shape[0])
        layers = [
            DecoderLayer(
                attn_norm=take(f"blk.{i}.attn_norm.weight"),
                wq=take(f"blk.{i}.attn_q.weight"),
                wk=take(f"blk.{i}.attn_k.weight"),
                wv=take(f"blk.{i}.attn_v.weight"),
                wo=take(f"blk.{i}.attn_output.weight"),
                ffn_norm=take(f"blk.{i}.ffn_norm.weight"),
                w_gate=take(f"blk.{i}.ffn_gate.weight"),
                w_up=take(f"blk.{i}.ffn_up.weight"),
                w_down=take(f"blk.{i}.ffn_down.weight"),
                bq=maybe(f"blk.{i}.attn_q.bias"),
                bk=maybe(f"blk.{i}.attn_k.bias"),
                bv=maybe(f"blk.{i}.attn_v.bias"),
                bo=maybe(f"blk.{i}.attn_output.bias"),
                q_norm=take(f"blk.{i}.attn_q_norm.weight") if hp.arch in ("qwen3", "gemma3") else None,
                k_norm=take(f"blk.{i}.attn_k_norm.weight") if hp.arch in ("qwen3", "gemma3") else None,
                post_attn_norm=take(f"blk.{i}.post_attention_norm.weight") if hp.arch == "gemma3" else None,
                post_ffn_norm=take(f"blk.{i}.post_ffw_norm.weight") if hp.arch == "gemma3" else None,
            )
            for i in range(hp.n_layers)
        ]
        output_norm = take("output_norm.weight")
        lm_head = maybe("output.weight")
        lm_head_bias = maybe("output.bias")
        freq_factors = maybe("rope_freqs.weight") if hp.arch == "llama" else None
        if unused:  # a weight this reference does not apply would make it silently wrong
            raise ValueError(f"{hp.arch}: tensors not used by the reference: {sorted(unused)}")
        model = cls(
            hp,
            token_embd,
            layers,
            output_norm,
            token_embd if lm_head is None else lm_head,
            lm_head_bias,
            freq_factors,
        )
        model._check_shapes()
        return model

    def _check_shapes(self) -> None:
        hp, w = self.hp, self.layers[0]
        assert self.token_embd.shape == (hp.vocab, hp.hidden), self.token_embd.shape
        assert self.lm_head.shape == (hp.vocab, hp.hidden), self.lm_head.shape
        assert w.wq.shape == (hp.n_heads * hp.head_dim, hp.hidden), w.wq.shape
        assert w.wk.shape == (hp.n_kv_heads * hp.head_dim, hp.hidden), w.wk.shape
        assert w.wv.shape == (hp.n_kv_heads * hp.head_dim_v, hp.hidden), w.wv.shape
        assert w.wo.shape == (hp.hidden, hp.n_heads * hp.head_dim_v), w.wo.shape
        assert hp.n_rot <= hp.head_dim and hp.n_rot % 2 == 0, hp.n_rot
        if self.rope_freq_factors is not None:
            assert self.rope_freq_factors.shape == (hp.n_rot // 2,), self.rope_freq_factors.shape

    # --- building blocks -------------------------------------------------------------------------

    def rms_norm(self, x: np.ndarray, weight: np.ndarray) -> np.ndarray:
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.hp.rms_eps) * weight

    def rope(self, x: np.ndarray, positions: np.ndarray, base: float, scale: float) -> np.ndarray:
        """Rotate x [S, heads, head_dim] by position [S]: pairs (2i, 2i+1) (normal) or (i, i + n_rot/2) (NEOX)."""
        n_rot = self.hp.n_rot
        inv_freq = base ** (-np.arange(0, n_rot, 2, dtype=_DTYPE) / n_rot)  # base^(-2i/n_rot), [n_rot/2]
        if self.rope_freq_factors is not None:
            inv_freq = inv_freq / self.rope_freq_factors
        angle = scale * positions.astype(_DTYPE)[:, None] * inv_freq[None, :]  # [S, n_rot/2]
        cos, sin = np.cos(angle)[:, None, :], np.sin(angle)[:, None, :]  # broadcast over heads
        if self.hp.rope_neox:
            i0, i1 = slice(0, n_rot // 2), slice(n_rot // 2, n_rot)
        else:
            i0, i1 = slice(0, n_rot, 2), slice(1, n_rot, 2)
        x0, x1 = x[..., i0], x[..., i1]
        out = x.copy()  # dimensions past n_rot pass through
        out[..., i0] = x0 * cos - x1 * sin
        out[..., i1] = x0 * sin + x1 * cos
        return out

    def attention(self, q: np.ndarray, k: np.ndarray, v: np.ndarray, window: int = 0) -> np.ndarray:
        """Causal grouped-query attention, q [S, H, D], k [S, KVH, D], v [S, KVH, Dv] → [S, H * Dv].

        window > 0: a query at position p sees only keys at p - window < pos <= p."""
        s, n_heads, _ = q.shape
        group = n_heads // self.hp.n_kv_heads  # query head h reads kv head h // group
        k = np.repeat(k, group, axis=1)
        v = np.repeat(v, group, axis=1)
        scores = np.einsum("qhd,khd->hqk", q, k) * self.hp.attn_scale  # [H, S, S]
        pos = np.arange(s)
        distance = pos[:, None] - pos[None, :]  # p_q - p_k
        visible = (distance >= 0) & ((distance < window) if window > 0 else True)
        scores = np.where(visible[None], scores, -np.inf)
        scores -= scores.max(axis=-1, keepdims=True)
        probs = np.exp(scores)
        probs /= probs.sum(axis=-1, keepdims=True)
        return np.einsum("hqk,khd->qhd", probs, v).reshape(s, -1)

    @staticmethod
    def _bias(x: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        return x if b is None else x + b

    def _ffn_act(self, gate: np.ndarray) -> np.ndarray:
        if self.hp.arch == "gemma3":  # ggml_gelu / ggml_geglu: the tanh approximation
            return 0.5 * gate * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (gate + 0.044715 * gate**3)))
        return gate / (1.0 + np.exp(-gate))  # silu

    # --- the model -------------------------------------------------------------------------------

    def logits(self, token_ids: list[int] | np.ndarray) -> np.ndarray:
        """Logits [S, vocab] (float64) for one sequence starting at position 0."""
        return self.head(self.hidden(token_ids))

    def head(self, h: np.ndarray) -> np.ndarray:
        """Logits [S, vocab] of final hidden states h [S, hidden] (before output_norm)."""
        out = self._bias(self.rms_norm(h, self.output_norm) @ self.lm_head.T, self.lm_head_bias)
        if self.hp.final_softcap:
            out = self.hp.final_softcap * np.tanh(out / self.hp.final_softcap)
        return out

    def hidden(self, token_ids: list[int] | np.ndarray) -> np.ndarray:
        """The last layer's output [S, hidden] for one sequence starting at position 0."""
        hp = self.hp
        ids = np.asarray(token_ids, dtype=np.int64)
        s = ids.shape[0]
        positions = np.arange(s)
        h = self.token_embd[ids] * hp.embed_scale  # [S, hidden]
        for il, w in enumerate(self.layers):
            local = hp.swa_layers[il]
            x = self.rms_norm(h, w.attn_norm)
            q = self._bias(x @ w.wq.T, w.bq).reshape(s, hp.n_heads, hp.head_dim)
            k = self._bias(x @ w.wk.T, w.bk).reshape(s, hp.n_kv_heads, hp.head_dim)
            v = self._bias(x @ w.wv.T, w.bv).reshape(s, hp.n_kv_heads, hp.head_dim_v)
            if w.q_norm is not None and w.k_norm is not None:
                q, k = self.rms_norm(q, w.q_norm), self.rms_norm(k, w.k_norm)
            base, scale = (hp.rope_base_swa, 1.0) if local else (hp.rope_base, hp.rope_scale)
            q, k = self.rope(q, positions, base, scale), self.rope(k, positions, base, scale)
            a = self._bias(self.attention(q, k, v, hp.sliding_window if local else 0) @ w.wo.T, w.bo)
            h = h + (a if w.post_attn_norm is None else self.rms_norm(a, w.post_attn_norm))
            x = self.rms_norm(h, w.ffn_norm)
            f = (self._ffn_act(x @ w.w_gate.T) * (x @ w.w_up.T)) @ w.w_down.T
            h = h + (f if w.post_ffn_norm is None else self.rms_norm(f, w.post_ffn_norm))
        return h

    forward = logits  # the name reference_llama's users call

    def greedy(self, token_ids: list[int], max_new_tokens: int, eos_id: int | None = None) -> list[int]:
        """Greedy continuation (recomputes the whole sequence each step: slow, for sanity checks only)."""
        ids = list(token_ids)
        out: list[int] = []
        for _ in range(max_new_tokens):
            nxt = int(np.argmax(self.head(self.hidden(ids)[-1:])[0]))
            if nxt == eos_id:
                break
            ids.append(nxt)
            out.append(nxt)
        return out

    def with_hparams(self, **changes: Any) -> ReferenceDecoder:
        """The same weights under changed hyperparameters (for tests that probe one semantic at a time)."""
        return ReferenceDecoder(
            replace(self.hp, **changes),
            self.token_embd,
            self.layers,
            self.output_norm,
            self.lm_head,
            self.lm_head_bias,
            self.rope_freq_factors,
        )
