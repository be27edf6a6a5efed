"""Every block type and architecture the converter takes, proven on tiny random GGUFs written with the `gguf`
package (tests/models/synthetic_gguf.py): the ONNX model's logits against the independent float64 reference
(tests/models/reference_decoder.py), for a whole sequence and for a prefill followed by one-token decode steps.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from gguf import GGMLQuantizationType as QT

from inference_service.models.convert import convert
from tests.models.reference_decoder import ReferenceDecoder
from tests.models.synthetic_gguf import write_tiny_gguf

# Random weights (std 0.05) give logits up to ~4; the fp32 graph lands within 6.2e-6 of the float64 reference
# (observed over every case here). A wrong code, scale, rope layout, window or norm is off by 0.1 or more (qwen
# with llama's interleaved rotary instead of NEOX fails here).
ATOL = 2e-4
# twelve tokens: longer than gemma3's tiny sliding window (4), so local layers really slide
IDS = [1, 17, 40, 93, 5, 250, 61, 7, 300, 12, 99, 3]

BLOCK_TYPES = [
    QT.Q4_0,
    QT.Q4_1,
    QT.Q5_0,
    QT.Q5_1,
    QT.Q8_0,
    QT.Q2_K,
    QT.Q3_K,
    QT.Q4_K,
    QT.Q5_K,
    QT.Q6_K,
    QT.IQ4_NL,
    QT.F16,
]
# what a Q4_K_M file mixes: Q4_K, Q6_K for v and down, Q5_0 where rows are short, a Q8_0 embedding
Q4_K_M = {"default": QT.Q4_K, "attn_v": QT.Q6_K, "ffn_down": QT.Q6_K, "attn_k": QT.Q5_0, "token_embd": QT.Q8_0}
ARCHS = {
    "llama": {},
    "llama-rope-freqs-tied": {"rope_freqs": True, "tied": True},
    "qwen2": {},
    "qwen3": {},
    "gemma3": {},
}


class Driver:
    """Plain session.run over the converted folder's I/O contract (past of exactly P)."""

    def __init__(self, folder: Path) -> None:
        decoder = json.loads((folder / "genai_config.json").read_text())["model"]["decoder"]
        self.layers, self.kv_heads = decoder["num_hidden_layers"], decoder["num_key_value_heads"]
        self.head_dim = decoder["head_size"]
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])

    def run(self, ids: list[int], past: list[np.ndarray] | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
        if past is None:
            past = [np.zeros((1, self.kv_heads, 0, self.head_dim), np.float32)] * (2 * self.layers)
        p = past[0].shape[2]
        feeds = {
            "input_ids": np.array([ids], np.int64),
            "attention_mask": np.ones((1, p + len(ids)), np.int64),
            "num_logits_to_keep": np.array(0, np.int64),
        }
        for i in range(self.layers):
            feeds[f"past_key_values.{i}.key"], feeds[f"past_key_values.{i}.value"] = past[2 * i], past[2 * i + 1]
        out = self.session.run(None, feeds)
        return out[0][0], out[1:]


def check(gguf_path: Path, out: Path) -> None:
    reference = ReferenceDecoder.from_gguf(gguf_path).logits(IDS)
    model = Driver(convert(gguf_path, out, progress=False))
    full, _ = model.run(IDS)
    diff = float(np.abs(full - reference).max())
    print(f"{gguf_path.name}: max |onnx - reference| {diff:.3g}, max |logit| {np.abs(reference).max():.2f}")
    assert diff < ATOL
    assert (full.argmax(-1) == reference.argmax(-1)).all()
    # prefill of 5, then one token at a time through the KV cache (the sliding window across decode steps)
    logits, past = model.run(IDS[:5])
    steps = [logits]
    for token in IDS[5:]:
        logits, past = model.run([token], past)
        steps.append(logits)
    assert float(np.abs(np.concatenate(steps) - reference).max()) < ATOL


@pytest.mark.parametrize("qtype", BLOCK_TYPES, ids=lambda q: q.name)
def test_block_type(qtype: QT, tmp_path: Path) -> None:
    check(write_tiny_gguf(tmp_path / "tiny.gguf", "llama", {"default": qtype, "token_embd": QT.Q8_0}), tmp_path / "m")


@pytest.mark.parametrize("name", ARCHS)
def test_architecture(name: str, tmp_path: Path) -> None:
    arch = name.split("-")[0]
    check(write_tiny_gguf(tmp_path / "tiny.gguf", arch, Q4_K_M, **ARCHS[name]), tmp_path / "m")


def test_final_logit_softcapping(tmp_path: Path) -> None:
    check(write_tiny_gguf(tmp_path / "tiny.gguf", "gemma3", Q4_K_M, final_logit_softcapping=3.0), tmp_path / "m")
