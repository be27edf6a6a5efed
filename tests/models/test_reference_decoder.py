"""The float64 reference (``reference_decoder``) and the tiny random GGUFs (``synthetic_gguf``) that the converter
tests use as oracles: the files are valid, the reference is deterministic and causal on every architecture, its
sliding window and rotary layouts follow llama.cpp, and on the real files it matches what a model should say."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest

from tests.models.reference_decoder import ReferenceDecoder
from tests.models.synthetic_gguf import BLOCK_TYPES, WEIGHT_STD, write_tiny_gguf

Q = gguf.GGMLQuantizationType
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "llama": ("llama", {}),
    "llama-tied": ("llama", {"tied": True}),
    "llama3-rope-freqs": ("llama", {"rope_freqs": True}),
    "qwen2": ("qwen2", {}),
    "qwen3": ("qwen3", {}),
    "gemma3": ("gemma3", {}),
    "gemma3-softcap": ("gemma3", {"final_logit_softcapping": 3.0}),
}
IDS = [1, 40, 300, 7, 250, 99, 12, 318, 64, 3, 200, 150]  # longer than the gemma3 files' window (4)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ReferenceDecoder]:
    out = tmp_path_factory.mktemp("synthetic")
    types = {"default": Q.Q4_K, "token_embd": Q.Q8_0, "output": Q.Q6_K, "attn_v": Q.Q5_0}
    return {
        name: ReferenceDecoder.from_gguf(write_tiny_gguf(out / f"{name}.gguf", arch, types, **kw))
        for name, (arch, kw) in VARIANTS.items()
    }


@pytest.mark.parametrize("qtype", BLOCK_TYPES, ids=lambda q: q.name)
def test_synthetic_file_is_valid(qtype: gguf.GGMLQuantizationType, tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "m.gguf", "llama", qtype)
    reader = gguf.GGUFReader(path)
    assert reader.fields["tokenizer.ggml.model"].contents() == "gpt2"
    for tensor in reader.tensors:
        w = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
        assert np.isfinite(w).all(), tensor.name
        if len(tensor.shape) == 2:
            assert tensor.tensor_type == qtype, tensor.name
            assert 0.8 * WEIGHT_STD < w.std() < 1.2 * WEIGHT_STD, (tensor.name, w.std())
            assert abs(w.mean()) < 0.2 * WEIGHT_STD, (tensor.name, w.mean())
    logits = ReferenceDecoder.from_gguf(path).logits(IDS[:5])
    assert logits.shape == (5, len(reader.fields["tokenizer.ggml.tokens"].contents()))
    assert np.isfinite(logits).all() and 0.1 < logits.std() < 10


@pytest.mark.parametrize("variant", VARIANTS)
def test_reference_is_deterministic_and_causal(variant: str, synthetic: dict[str, ReferenceDecoder]) -> None:
    model = synthetic[variant]
    full = model.logits(IDS)
    assert np.isfinite(full).all()
    np.testing.assert_array_equal(model.logits(IDS), full)
    for n in (1, 3, 5, 9):  # a prefix sees nothing of what follows it
        np.testing.assert_allclose(model.logits(IDS[:n]), full[:n], rtol=0, atol=1e-12)
    assert not np.allclose(model.logits([*IDS[:-2], 5, IDS[-1]])[-1], full[-1])  # but the last row sees all


def test_synthetic_architectures_differ_where_they_should(synthetic: dict[str, ReferenceDecoder]) -> None:
    hp = {name: m.hp for name, m in synthetic.items()}
    assert hp["llama"].rope_neox is False and all(hp[a].rope_neox for a in ("qwen2", "qwen3", "gemma3"))
    assert synthetic["qwen2"].layers[0].bq is not None and synthetic["llama"].layers[0].bq is None
    assert hp["qwen3"].head_dim * hp["qwen3"].n_heads != hp["qwen3"].hidden
    assert synthetic["llama-tied"].lm_head is synthetic["llama-tied"].token_embd
    assert synthetic["llama3-rope-freqs"].rope_freq_factors is not None
    assert hp["gemma3"].swa_layers == (True,) * 5 + (False,)  # llama.cpp: il % 6 < 5 slides
    assert hp["gemma3"].embed_scale == np.float32(16.0) and hp["gemma3"].attn_scale == 1 / np.sqrt(128)
    capped = synthetic["gemma3-softcap"].logits(IDS)
    assert np.abs(capped).max() < 3.0


def test_sliding_window_sees_exactly_the_last_window_positions(synthetic: dict[str, ReferenceDecoder]) -> None:
    # llama.cpp (llama_hparams::is_masked_swa, STANDARD): key p_k is masked for query p_q when p_q - p_k >= n_swa.
    # With q = 0 every visible key gets the same weight, and v = one-hot positions shows which keys those are.
    model, s, window = synthetic["gemma3"], 10, 4
    hp = model.hp
    q = np.zeros((s, hp.n_heads, hp.head_dim))
    k = np.zeros((s, hp.n_kv_heads, hp.head_dim))
    v = np.broadcast_to(np.eye(s)[:, None, :], (s, hp.n_kv_heads, s))
    seen = model.with_hparams(head_dim_v=s).attention(q, k, v, window).reshape(s, hp.n_heads, s)[:, 0] > 0
    for p in range(s):
        assert set(np.flatnonzero(seen[p])) == set(range(max(0, p - window + 1), p + 1)), p


def test_sliding_window_changes_only_positions_past_it(synthetic: dict[str, ReferenceDecoder]) -> None:
    model = synthetic["gemma3"]
    windowed, unwindowed = model.logits(IDS), model.with_hparams(sliding_window=0).logits(IDS)
    window = model.hp.sliding_window
    np.testing.assert_allclose(windowed[:window], unwindowed[:window], rtol=0, atol=1e-12)
    assert not np.allclose(windowed[window:], unwindowed[window:], rtol=0, atol=1e-6)


def _unpermute_qk(model: ReferenceDecoder) -> ReferenceDecoder:
    """The model as Hugging Face holds it: llama.cpp's converter permutes the rows of q and k so that its normal
    (adjacent-pair) rope equals rotate-half; undo that and rotate halves (NEOX) instead."""
    hp = model.hp

    def unpermute(w: np.ndarray, heads: int) -> np.ndarray:
        return w.reshape(heads, hp.head_dim // 2, 2, -1).swapaxes(1, 2).reshape(w.shape)

    hf = model.with_hparams(rope_neox=True)
    hf.layers = [replace(w, wq=unpermute(w.wq, hp.n_heads), wk=unpermute(w.wk, hp.n_kv_heads)) for w in model.layers]
    return hf


def test_normal_rope_on_gguf_rows_equals_neox_on_hf_rows(synthetic: dict[str, ReferenceDecoder]) -> None:
    for name in ("llama", "llama3-rope-freqs"):
        model = synthetic[name]
        np.testing.assert_allclose(_unpermute_qk(model).logits(IDS), model.logits(IDS), rtol=0, atol=1e-12)
        assert not np.allclose(model.with_hparams(rope_neox=True).logits(IDS), model.logits(IDS), atol=1e-3)


def test_real_llama_rope_layouts_agree(reference: ReferenceDecoder) -> None:
    # The default model (SmolLM2, llama arch): the GGUF-layout forward pass and the HF-layout one agree.
    ids = [1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365]
    expected = reference.logits(ids)
    np.testing.assert_allclose(_unpermute_qk(reference).logits(ids), expected, rtol=0, atol=1e-9)


def test_real_gemma3_continues_english(gemma_gguf: Path) -> None:
    reader = gguf.GGUFReader(gemma_gguf)
    tokens: list[str] = reader.fields["tokenizer.ggml.tokens"].contents()
    index = {t: i for i, t in enumerate(tokens)}
    del reader
    model = ReferenceDecoder.from_gguf(gemma_gguf)
    prompt = [index[p] for p in ("<bos>", "The", "▁capital", "▁of", "▁France", "▁is")]
    logits = model.logits(prompt)[-1]
    assert index["▁Paris"] in np.argsort(-logits)[:5]
    out = "".join(tokens[i] for i in model.greedy(prompt, max_new_tokens=4, eos_id=1))
    assert out.startswith("▁the▁capital"), out
