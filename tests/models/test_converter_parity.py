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

PROMPTS = {
    "chatml": "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    "english": "The quick brown fox jumps over the lazy dog, then runs back into the forest to sleep.",
    "code": "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n\n"
    "print([fib(i) for i in range(10)])\n",
    "unicode": "Prices rose 3.14% in 2024 — café ☕, naïve façade, 東京 and Zürich: 1,234,567 € (ñ≠n).",
}


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference(gguf_path: Path) -> ReferenceLlama:
    return ReferenceLlama.from_gguf(gguf_path)


@pytest.fixture(scope="module")
def tokenizer(model_dir: Path) -> Tokenizer:
    return Tokenizer.from_file(str(model_dir / "tokenizer.json"))


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


# --- running the ONNX model ---------------------------------------------------------------------

Past = list[tuple[np.ndarray, np.ndarray]]


class OnnxLlama:
    """A thin driver over the converted model's I/O contract (plain ``session.run``, past of exactly P)."""

    def __init__(self, session: ort.InferenceSession, reference: ReferenceLlama) -> None:
        self.session = session
        self.n_layers = reference.hp.n_layers
        self.n_kv_heads = reference.hp.n_kv_heads
        self.head_dim = reference.hp.head_dim
        # An input with a default value may be an initializer listed among the graph inputs: ORT then reports
        # it as an overridable initializer rather than an input.
        self.input_names = {i.name for i in session.get_inputs()} | {
            i.name for i in session.get_overridable_initializers()
        }

    def empty_past(self, batch: int) -> Past:
        shape = (batch, self.n_kv_heads, 0, self.head_dim)
        return [(np.zeros(shape, np.float32), np.zeros(shape, np.float32)) for _ in range(self.n_layers)]

    def run(self, ids: np.ndarray, past: Past | None = None, keep: int | None = None) -> tuple[np.ndarray, Past]:
        ids = np.asarray(ids, dtype=np.int64)
        if ids.ndim == 1:
            ids = ids[None, :]
        batch, s = ids.shape
        past = self.empty_past(batch) if past is None else past
        p = past[0][0].shape[2]
        feeds: dict[str, np.ndarray] = {
            "input_ids": ids,
            "attention_mask": np.ones((batch, p + s), dtype=np.int64),
        }
        for i, (k, v) in enumerate(past):
            feeds[f"past_key_values.{i}.key"] = k
            feeds[f"past_key_values.{i}.value"] = v
        if keep is not None:
            feeds["num_logits_to_keep"] = np.array(keep, dtype=np.int64)
        elif "num_logits_to_keep" in self.input_names:
            feeds["num_logits_to_keep"] = np.array(0, dtype=np.int64)
        names = ["logits"] + [f"present.{i}.{kv}" for i in range(self.n_layers) for kv in ("key", "value")]
        out = self.session.run(names, feeds)
        logits, flat = out[0], out[1:]
        presents = [(flat[2 * i], flat[2 * i + 1]) for i in range(self.n_layers)]
        for k, v in presents:
            assert k.shape == v.shape == (batch, self.n_kv_heads, p + s, self.head_dim), (k.shape, v.shape)
        return logits, presents


@pytest.fixture(scope="module")
def onnx_model(session: ort.InferenceSession, reference: ReferenceLlama) -> OnnxLlama:
    return OnnxLlama(session, reference)


@pytest.fixture(scope="module")
def full_logits(onnx_model: OnnxLlama, prompt_ids: dict[str, list[int]]) -> dict[str, np.ndarray]:
    """ONNX logits [S, V] of each whole prompt in one prefill (the baseline for the KV-cache tests)."""
    return {name: onnx_model.run(np.array(ids))[0][0] for name, ids in prompt_ids.items()}


# --- comparisons --------------------------------------------------------------------------------


def assert_close(actual: np.ndarray, expected: np.ndarray, atol: float, what: str) -> float:
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    assert np.all(np.isfinite(actual)), what
    diff = float(np.max(np.abs(actual.astype(np.float64) - expected.astype(np.float64))))
    print(f"{what}: max |diff| = {diff:.3g} (max |logit| = {np.max(np.abs(expected)):.1f}, atol {atol:g})")
    assert diff <= atol, f"{what}: max |diff| {diff:.3g} > {atol:g}"
    return diff


def assert_same_argmax(actual: np.ndarray, expected: np.ndarray, atol: float, what: str) -> None:
    """Greedy choices agree at every position. Where the expected top-2 margin is within ``atol`` (a genuine
    tie at this precision) the actual choice only needs to be one of the tied tokens."""
    a, e = actual.argmax(axis=-1), expected.argmax(axis=-1)
    top2 = np.sort(expected, axis=-1)[..., -2:]
    margin = top2[..., 1] - top2[..., 0]
    print(f"{what}: smallest top-2 margin {float(margin.min()):.3g}")
    for pos in zip(*np.nonzero(a != e), strict=True):
        chosen = expected[pos][a[pos]]
        assert expected[pos][e[pos]] - chosen <= atol, (
            f"{what}: argmax differs at {pos}: onnx {a[pos]} vs reference {e[pos]} (margin {margin[pos]:.3g})"
        )


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
