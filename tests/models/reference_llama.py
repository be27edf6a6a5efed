"""An independent numpy forward pass of a llama-architecture GGUF, used to prove the GGUF → ONNX converter.

Nothing here is shared with ``inference_service.models``: weights are dequantized by the ``gguf`` package
itself (``gguf.quants.dequantize``) and the math is written out plainly, so that it documents the model:

    h = token_embd[ids]
    for each layer:
        x = rms_norm(h) * attn_norm
        q, k, v = x @ Wq.T, x @ Wk.T, x @ Wv.T            (GGUF tensors are [out, in] after dequantization)
        q, k = rope(q), rope(k)                           (adjacent pairs, see below)
        h = h + causal_gqa_attention(q, k, v) @ Wo.T
        x = rms_norm(h) * ffn_norm
        h = h + (silu(x @ Wgate.T) * (x @ Wup.T)) @ Wdown.T
    logits = (rms_norm(h) * output_norm) @ token_embd.T   (tied embeddings: no output.weight in the file)

RoPE: GGUF files written by llama.cpp's converter store the rows of attn_q / attn_k permuted so that
llama.cpp's "normal" rotary mode, which rotates ADJACENT pairs (x[2i], x[2i+1]) of each head by the angle
pos · base^(-2i/d), equals Hugging Face's rotate-half on the original weights. Applying the adjacent-pair form
directly to the GGUF weights is therefore exact and needs no un-permutation.

Everything is computed in float64 (the weights are the exact fp32 dequantized values, upcast), so this
reference is more accurate than any fp32 implementation under test.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np

_DTYPE = np.float64


@dataclass(frozen=True)
class LlamaHParams:
    n_layers: int
    hidden: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    rope_base: float
    rms_eps: float
    vocab: int


@dataclass(frozen=True)
class LayerWeights:
    attn_norm: np.ndarray  # [hidden]
    wq: np.ndarray  # [n_heads * head_dim, hidden]
    wk: np.ndarray  # [n_kv_heads * head_dim, hidden]
    wv: np.ndarray  # [n_kv_heads * head_dim, hidden]
    wo: np.ndarray  # [hidden, n_heads * head_dim]
    ffn_norm: np.ndarray  # [hidden]
    w_gate: np.ndarray  # [ffn, hidden]
    w_up: np.ndarray  # [ffn, hidden]
    w_down: np.ndarray  # [hidden, ffn]


def _field(reader: gguf.GGUFReader, key: str) -> object:
    return reader.fields[key].contents()


def _dequantize(tensor: gguf.gguf_reader.ReaderTensor) -> np.ndarray:
    # gguf's own dequantizer; the result has numpy shape [out, in] (GGUF lists dims innermost-first).
    w = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
    return np.ascontiguousarray(w, dtype=_DTYPE)


class ReferenceLlama:
    """Dequantized weights of a llama GGUF and a plain float64 forward pass over one sequence."""

    def __init__(
        self,
        hp: LlamaHParams,
        token_embd: np.ndarray,
        layers: list[LayerWeights],
        output_norm: np.ndarray,
        lm_head: np.ndarray,
    ) -> None:
        self.hp = hp
        self.token_embd = token_embd  # [vocab, hidden]
        self.layers = layers
        self.output_norm = output_norm  # [hidden]
        self.lm_head = lm_head  # [vocab, hidden]

    @classmethod
    def from_gguf(cls, path: str | Path) -> ReferenceLlama:
        reader = gguf.GGUFReader(str(path))
        arch = _field(reader, "general.architecture")
        assert arch == "llama", f"not a llama GGUF: {arch}"
        n_heads = int(_field(reader, "llama.attention.head_count"))
        hidden = int(_field(reader, "llama.embedding_length"))
        hp = LlamaHParams(
            n_layers=int(_field(reader, "llama.block_count")),
            hidden=hidden,
            n_heads=n_heads,
            n_kv_heads=int(_field(reader, "llama.attention.head_count_kv")),
            head_dim=hidden // n_heads,
            rope_base=float(_field(reader, "llama.rope.freq_base")),
            rms_eps=float(_field(reader, "llama.attention.layer_norm_rms_epsilon")),
            vocab=int(_field(reader, "llama.vocab_size")),
        )
        t = {tensor.name: tensor for tensor in reader.tensors}
        layers = [
            LayerWeights(
                attn_norm=_dequantize(t[f"blk.{i}.attn_norm.weight"]),
                wq=_dequantize(t[f"blk.{i}.attn_q.weight"]),
                wk=_dequantize(t[f"blk.{i}.attn_k.weight"]),
                wv=_dequantize(t[f"blk.{i}.attn_v.weight"]),
                wo=_dequantize(t[f"blk.{i}.attn_output.weight"]),
                ffn_norm=_dequantize(t[f"blk.{i}.ffn_norm.weight"]),
                w_gate=_dequantize(t[f"blk.{i}.ffn_gate.weight"]),
                w_up=_dequantize(t[f"blk.{i}.ffn_up.weight"]),
                w_down=_dequantize(t[f"blk.{i}.ffn_down.weight"]),
            )
            for i in range(hp.n_layers)
        ]
        token_embd = _dequantize(t["token_embd.weight"])
        lm_head = _dequantize(t["output.weight"]) if "output.weight" in t else token_embd
        model = cls(hp, token_embd, layers, _dequantize(t["output_norm.weight"]), lm_head)
        assert token_embd.shape == (hp.vocab, hp.hidden), token_embd.shape
        assert layers[0].wq.shape == (hp.n_heads * hp.head_dim, hp.hidden), layers[0].wq.shape
        assert layers[0].wk.shape == (hp.n_kv_heads * hp.head_dim, hp.hidden), layers[0].wk.shape
        return model

    # --- building blocks -------------------------------------------------------------------------

    def rms_norm(self, x: np.ndarray, weight: np.ndarray) -> np.ndarray:
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.hp.rms_eps) * weight

    def rope(self, x: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Rotate adjacent pairs of each head: x [S, heads, head_dim], positions [S]."""
        d = self.hp.head_dim
        inv_freq = self.hp.rope_base ** (-np.arange(0, d, 2, dtype=_DTYPE) / d)  # theta_i = base^(-2i/d)
        angle = positions.astype(_DTYPE)[:, None] * inv_freq[None, :]  # [S, d/2]
        cos, sin = np.cos(angle)[:, None, :], np.sin(angle)[:, None, :]  # broadcast over heads
        x0, x1 = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = x0 * cos - x1 * sin
        out[..., 1::2] = x0 * sin + x1 * cos
        return out

    def attention(self, q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Causal grouped-query attention. q [S, H, D], k/v [S, KVH, D] → [S, H * D]."""
        s, n_heads, d = q.shape
        group = n_heads // self.hp.n_kv_heads  # query head h reads kv head h // group
        k = np.repeat(k, group, axis=1)
        v = np.repeat(v, group, axis=1)
        scores = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(d)  # [H, S, S]
        scores = np.where(np.tril(np.ones((s, s), dtype=bool))[None], scores, -np.inf)
        scores -= scores.max(axis=-1, keepdims=True)
        probs = np.exp(scores)
        probs /= probs.sum(axis=-1, keepdims=True)
        return np.einsum("hqk,khd->qhd", probs, v).reshape(s, n_heads * d)

    # --- the model -------------------------------------------------------------------------------

    def forward(self, token_ids: list[int] | np.ndarray) -> np.ndarray:
        """Logits [S, vocab] (float64) for one sequence starting at position 0."""
        hp = self.hp
        ids = np.asarray(token_ids, dtype=np.int64)
        s = ids.shape[0]
        positions = np.arange(s)
        h = self.token_embd[ids]  # [S, hidden]
        for w in self.layers:
            x = self.rms_norm(h, w.attn_norm)
            q = (x @ w.wq.T).reshape(s, hp.n_heads, hp.head_dim)
            k = (x @ w.wk.T).reshape(s, hp.n_kv_heads, hp.head_dim)
            v = (x @ w.wv.T).reshape(s, hp.n_kv_heads, hp.head_dim)
            q, k = self.rope(q, positions), self.rope(k, positions)
            h = h + self.attention(q, k, v) @ w.wo.T
            x = self.rms_norm(h, w.ffn_norm)
            gate = x @ w.w_gate.T
            h = h + ((gate / (1.0 + np.exp(-gate))) * (x @ w.w_up.T)) @ w.w_down.T  # SwiGLU
        return self.rms_norm(h, self.output_norm) @ self.lm_head.T

    def greedy(self, token_ids: list[int], max_new_tokens: int, eos_id: int | None = None) -> list[int]:
        """Greedy continuation (recomputes the whole sequence each step: slow, for sanity checks only)."""
        ids = list(token_ids)
        out: list[int] = []
        for _ in range(max_new_tokens):
            nxt = int(np.argmax(self.forward(ids)[-1]))
            if nxt == eos_id:
                break
            ids.append(nxt)
            out.append(nxt)
        return out
