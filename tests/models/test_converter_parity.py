"""The converted ONNX model computes what the GGUF weights define.

The reference is ``reference_llama.ReferenceLlama``: an independent float64 numpy forward pass over weights
dequantized by the ``gguf`` package itself. The ONNX model runs on the CPU EP in fp32 through a plain
``InferenceSession`` (no engine code involved), so these tests check the converter alone:

(a) full-sequence logits match the reference on several prompts (and a batch of two), argmax identical;
(b) the KV cache is consistent: prefill + one-token decode steps, and prefill in two chunks, give the
    logits of the full-sequence run;
(c) ``num_logits_to_keep`` returns just the last positions of the full run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from tokenizers import Tokenizer

from tests.models.onnx_driver import PROMPTS, OnnxLlama, assert_close, assert_same_argmax
from tests.models.reference_llama import ReferenceLlama

pytestmark = pytest.mark.model

# Observed on SmolLM2-135M-Instruct Q4_1 (default accuracy_level 0, fp32 activations, CPU EP, 2 threads):
# max |logit| 31-45, max |ONNX - reference| 0.8e-4 .. 1.4e-4 per prompt (the reference is float64; the same
# forward with fp32 matmuls in numpy lands at ~3e-6). The bound leaves ~7x headroom and is still far below
# real bugs, measured on the ChatML prompt: rotate-half instead of adjacent-pair RoPE on the GGUF rows is off
# by 28 (6 of 16 argmaxes flip); kv heads tiled instead of repeated in GQA is off by 40 (14 of 16 flip).
LOGITS_ATOL = 1e-3
# Same graph, same weights, different chunking / batching of the sequence: only the fp32 summation order may
# change (decode steps vs one prefill: up to 7.5e-5 observed; two-chunk prefill, batch of two and
# num_logits_to_keep: bitwise equal). 5e-4 on logits up to ~45 is ~1e-5 relative.
KV_ATOL = 5e-4


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def session(model_dir: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(str(model_dir / "model.onnx"), options, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def prompt_ids(tokenizer: Tokenizer) -> dict[str, list[int]]:
    return {name: tokenizer.encode(text, add_special_tokens=False).ids for name, text in PROMPTS.items()}


@pytest.fixture(scope="module")
def reference_logits(reference: ReferenceLlama, prompt_ids: dict[str, list[int]]) -> dict[str, np.ndarray]:
    return {name: reference.forward(ids) for name, ids in prompt_ids.items()}


@pytest.fixture(scope="module")
def onnx_model(session: ort.InferenceSession, reference: ReferenceLlama) -> OnnxLlama:
    return OnnxLlama(session, reference)


@pytest.fixture(scope="module")
def full_logits(onnx_model: OnnxLlama, prompt_ids: dict[str, list[int]]) -> dict[str, np.ndarray]:
    """ONNX logits [S, V] of each whole prompt in one prefill (the baseline for the KV-cache tests)."""
    return {name: onnx_model.run(np.array(ids))[0][0] for name, ids in prompt_ids.items()}


# --- (a) logits parity against the reference ----------------------------------------------------


def test_reference_answers_paris(
    reference: ReferenceLlama, tokenizer: Tokenizer, prompt_ids: dict[str, list[int]]
) -> None:
    """The reference itself is right: its fp32-faithful greedy answer is the one the DESIGN records."""
    out = reference.greedy(prompt_ids["chatml"], max_new_tokens=8, eos_id=2)
    assert "Paris" in tokenizer.decode(out)


@pytest.mark.parametrize("name", list(PROMPTS))
def test_logits_match_reference(
    name: str, full_logits: dict[str, np.ndarray], reference_logits: dict[str, np.ndarray]
) -> None:
    assert len(reference_logits[name]) >= 15, "prompt unexpectedly short"
    assert_close(full_logits[name], reference_logits[name], LOGITS_ATOL, f"logits[{name}]")
    assert_same_argmax(full_logits[name], reference_logits[name], LOGITS_ATOL, f"argmax[{name}]")


def test_onnx_greedy_answers_paris(
    onnx_model: OnnxLlama, tokenizer: Tokenizer, prompt_ids: dict[str, list[int]]
) -> None:
    logits, past = onnx_model.run(np.array(prompt_ids["chatml"]))
    out: list[int] = []
    for _ in range(8):
        nxt = int(logits[0, -1].argmax())
        if nxt == 2:
            break
        out.append(nxt)
        logits, past = onnx_model.run(np.array([nxt]), past)
    assert "Paris" in tokenizer.decode(out), tokenizer.decode(out)


def test_batched_logits_match_reference(
    onnx_model: OnnxLlama,
    reference: ReferenceLlama,
    prompt_ids: dict[str, list[int]],
    full_logits: dict[str, np.ndarray],
) -> None:
    n = min(len(prompt_ids["english"]), len(prompt_ids["code"]))
    batch = np.array([prompt_ids["english"][:n], prompt_ids["code"][:n]])
    logits, _ = onnx_model.run(batch)
    assert logits.shape == (2, n, reference.hp.vocab)
    for row, name in enumerate(("english", "code")):
        expected = reference.forward(batch[row])
        assert_close(logits[row], expected, LOGITS_ATOL, f"batched logits[{name}]")
        assert_same_argmax(logits[row], expected, LOGITS_ATOL, f"batched argmax[{name}]")
        # Batching must not change a sequence's result beyond fp32 summation order.
        assert_close(logits[row], full_logits[name][:n], KV_ATOL, f"batched vs single[{name}]")


# --- (b) KV-cache consistency -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["chatml", "unicode"])
def test_decode_steps_match_full_run(
    name: str,
    onnx_model: OnnxLlama,
    prompt_ids: dict[str, list[int]],
    full_logits: dict[str, np.ndarray],
    reference_logits: dict[str, np.ndarray],
) -> None:
    ids = prompt_ids[name]
    prefill = len(ids) // 2
    logits, past = onnx_model.run(np.array(ids[:prefill]))
    steps = [logits[0]]
    for tok in ids[prefill:]:
        logits, past = onnx_model.run(np.array([tok]), past)
        assert logits.shape[:2] == (1, 1)
        steps.append(logits[0])
    stepped = np.concatenate(steps, axis=0)
    assert_close(stepped, full_logits[name], KV_ATOL, f"decode steps vs full run[{name}]")
    assert_same_argmax(stepped, full_logits[name], KV_ATOL, f"decode argmax[{name}]")
    assert_close(stepped, reference_logits[name], LOGITS_ATOL, f"decode steps vs reference[{name}]")


@pytest.mark.parametrize("name", ["english", "code"])
def test_two_chunk_prefill_matches_full_run(
    name: str, onnx_model: OnnxLlama, prompt_ids: dict[str, list[int]], full_logits: dict[str, np.ndarray]
) -> None:
    ids = prompt_ids[name]
    split = len(ids) // 3
    first, past = onnx_model.run(np.array(ids[:split]))
    second, past = onnx_model.run(np.array(ids[split:]), past)
    assert past[0][0].shape[2] == len(ids)
    chunked = np.concatenate([first[0], second[0]], axis=0)
    assert_close(chunked, full_logits[name], KV_ATOL, f"two chunks vs full run[{name}]")
    assert_same_argmax(chunked, full_logits[name], KV_ATOL, f"two chunks argmax[{name}]")


def test_batched_decode_matches_full_run(
    onnx_model: OnnxLlama, prompt_ids: dict[str, list[int]], full_logits: dict[str, np.ndarray]
) -> None:
    n = min(len(prompt_ids["english"]), len(prompt_ids["code"]))
    batch = np.array([prompt_ids["english"][:n], prompt_ids["code"][:n]])
    _, past = onnx_model.run(batch[:, : n - 3])
    for pos in range(n - 3, n):
        logits, past = onnx_model.run(batch[:, pos : pos + 1], past)
        for row, name in enumerate(("english", "code")):
            assert_close(logits[row, 0], full_logits[name][pos], KV_ATOL, f"batched decode[{name}] pos {pos}")


# --- (c) num_logits_to_keep ---------------------------------------------------------------------


@pytest.mark.parametrize("keep", [1, 3])
def test_num_logits_to_keep(
    keep: int,
    onnx_model: OnnxLlama,
    reference: ReferenceLlama,
    prompt_ids: dict[str, list[int]],
    full_logits: dict[str, np.ndarray],
) -> None:
    assert "num_logits_to_keep" in onnx_model.input_names
    n = min(len(prompt_ids["english"]), len(prompt_ids["code"]))
    batch = np.array([prompt_ids["english"][:n], prompt_ids["code"][:n]])
    logits, presents = onnx_model.run(batch, keep=keep)
    assert logits.shape == (2, keep, reference.hp.vocab)
    assert presents[0][0].shape[2] == n  # the cache still covers every position
    for row, name in enumerate(("english", "code")):
        assert_close(logits[row], full_logits[name][n - keep : n], KV_ATOL, f"keep={keep}[{name}]")
