"""A thin driver over a converted model's I/O contract (plain ``session.run``), the prompts the parity tests use,
and the comparisons they make."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from tests.models.reference_llama import ReferenceLlama

PROMPTS = {
    "chatml": "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    "english": "The quick brown fox jumps over the lazy dog, then runs back into the forest to sleep.",
    "code": "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n\n"
    "print([fib(i) for i in range(10)])\n",
    "unicode": "Prices rose 3.14% in 2024 — café ☕, naïve façade, 東京 and Zürich: 1,234,567 € (ñ≠n).",
}


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
        past = next(i for i in self.session.get_inputs() if i.name == "past_key_values.0.key")
        dtype = {"tensor(float)": np.float32, "tensor(float16)": np.float16}[past.type]  # the graph's KV type
        return [(np.zeros(shape, dtype), np.zeros(shape, dtype)) for _ in range(self.n_layers)]

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
