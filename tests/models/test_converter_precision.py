"""The fp16 and bf16 graphs (what the CUDA EP runs), proven on the CPU EP without a GPU.

onnxruntime 1.31's CPU EP has fp16 kernels for GroupQueryAttention, MatMulNBits and the RMSNorms (and casts around
the ops it has none for), so the fp16 graph runs here: its logits are compared with the independent float64
reference, its KV cache with its own full runs, and its greedy answers with the exact fp32 graph's. The CPU EP has
no bf16 MatMulNBits, so the bf16 graph is checked for its types and structure only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper
from tokenizers import Tokenizer

from inference_service.models.precision import BF16, FP16, FP32, element_type
from tests.models.onnx_driver import PROMPTS, OnnxLlama, assert_close, assert_same_argmax
from tests.models.reference_llama import ReferenceLlama

pytestmark = pytest.mark.model

# Observed for the fp16 graph on the CPU EP against the float64 reference (max |logit| 31-45): max |diff| 0.08-0.25,
# mean 0.012-0.018 per prompt; the fp32 graph is at ~1e-4. fp16 activations (11-bit mantissa) through 30 layers
# explain it; real bugs are two orders larger (adjacent-pair vs rotate-half RoPE: 28; tiled kv heads: 40).
FP16_MAX_ATOL = 0.5
FP16_MEAN_ATOL = 0.05
# decode steps vs one prefill of the same tokens: both fp16, different kernels' summation orders
FP16_KV_ATOL = 0.25

CHATS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "List three primary colors.",
    "How many legs does a spider have?",
    "Translate 'good morning' into Spanish.",
    "What is 12 times 12?",
    "Name a famous painting by Leonardo da Vinci.",
    "Give me a tip for learning to code.",
]


def session_of(folder: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def fp16(model_dir_fp16: Path, reference: ReferenceLlama) -> OnnxLlama:
    return OnnxLlama(session_of(model_dir_fp16), reference)


@pytest.fixture(scope="module")
def fp32(model_dir: Path, reference: ReferenceLlama) -> OnnxLlama:
    return OnnxLlama(session_of(model_dir), reference)


def io_types(folder: Path) -> dict[str, str]:
    graph = onnx.load(str(folder / "model.onnx"), load_external_data=False).graph
    return {
        v.name: onnx.helper.tensor_dtype_to_string(v.type.tensor_type.elem_type) for v in (*graph.input, *graph.output)
    }


@pytest.mark.parametrize(("precision", "folder_fixture"), [(FP16, "model_dir_fp16"), (BF16, "model_dir_bf16")])
def test_kv_in_the_precision_logits_in_fp32(
    precision: object, folder_fixture: str, request: pytest.FixtureRequest
) -> None:
    folder: Path = request.getfixturevalue(folder_fixture)
    types = io_types(folder)
    expected = onnx.helper.tensor_dtype_to_string(precision.onnx_type)  # type: ignore[attr-defined]
    assert types["logits"] == "TensorProto.FLOAT"
    kv = {name: t for name, t in types.items() if name.startswith(("past_key_values.", "present."))}
    assert len(kv) == 4 * 30 and set(kv.values()) == {expected}


def test_fp16_keeps_the_gguf_block_scales_exactly(model_dir: Path, model_dir_fp16: Path) -> None:
    """GGUF stores Q4_1's d as f16: the fp16 graph's MatMulNBits scales are those values, bit for bit."""

    def scales(folder: Path) -> dict[str, np.ndarray]:
        model = onnx.load(str(folder / "model.onnx"))
        return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer if t.name.endswith(".scales")}

    exact, half = scales(model_dir), scales(model_dir_fp16)
    layer_scales = [name for name in exact if name.startswith("layers.")]
    assert len(layer_scales) == 4 * 30
    for name in layer_scales:
        assert half[name].dtype == np.float16
        assert np.array_equal(half[name].astype(np.float32), exact[name]), name


@pytest.mark.parametrize("name", list(PROMPTS))
def test_fp16_logits_match_reference(
    name: str, fp16: OnnxLlama, tokenizer: Tokenizer, reference: ReferenceLlama
) -> None:
    ids = tokenizer.encode(PROMPTS[name], add_special_tokens=False).ids
    expected = reference.forward(ids)
    logits = fp16.run(np.array(ids))[0][0]
    assert logits.dtype == np.float32
    assert_close(logits, expected, FP16_MAX_ATOL, f"fp16 logits[{name}]")
    mean = float(np.abs(logits - expected).mean())
    assert mean <= FP16_MEAN_ATOL, f"fp16 logits[{name}]: mean |diff| {mean:.3g}"
    assert_same_argmax(logits, expected, FP16_MAX_ATOL, f"fp16 argmax[{name}]")


def test_fp16_decode_steps_match_its_full_run(fp16: OnnxLlama, tokenizer: Tokenizer) -> None:
    ids = tokenizer.encode(PROMPTS["chatml"], add_special_tokens=False).ids
    full = fp16.run(np.array(ids))[0][0]
    prefill = len(ids) // 2
    logits, past = fp16.run(np.array(ids[:prefill]))
    assert past[0][0].dtype == np.float16
    steps = [logits[0]]
    for token in ids[prefill:]:
        logits, past = fp16.run(np.array([token]), past)
        steps.append(logits[0])
    assert_close(np.concatenate(steps), full, FP16_KV_ATOL, "fp16 decode steps vs full run")


def greedy(model: OnnxLlama, ids: list[int], new_tokens: int) -> list[int]:
    logits, past = model.run(np.array(ids))
    out: list[int] = []
    for _ in range(new_tokens):
        token = int(logits[0, -1].argmax())
        if token == 2:  # <|im_end|>
            break
        out.append(token)
        logits, past = model.run(np.array([token]), past)
    return out


def test_fp16_greedy_answers_agree_with_fp32(fp16: OnnxLlama, fp32: OnnxLlama, tokenizer: Tokenizer) -> None:
    """Greedy continuations of eight chats, 24 tokens each: how far the fp16 graph follows the exact one."""
    same, prefix = 0, []
    for question in CHATS:
        text = f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"
        ids = tokenizer.encode(text, add_special_tokens=False).ids
        a, b = greedy(fp16, ids, 24), greedy(fp32, ids, 24)
        same += a == b
        agree = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
        prefix.append(agree)
        print(f"{question!r}: fp16 {tokenizer.decode(a)!r} | fp32 {tokenizer.decode(b)!r} (agree {agree} tokens)")
    print(f"identical greedy answers: {same}/{len(CHATS)}; tokens agreeing before the first difference: {prefix}")
    assert same >= 6, f"only {same}/{len(CHATS)} identical"
    assert min(prefix) >= 4, prefix


def test_bf16_graph_has_no_cpu_kernels(model_dir_bf16: Path) -> None:
    """The bf16 graph is for the CUDA EP; onnxruntime 1.31's CPU EP has no bf16 MatMulNBits (said in the docs)."""
    with pytest.raises(Exception, match="MatMulNBits"):
        session_of(model_dir_bf16)


def test_precisions_map_onto_session_types() -> None:
    assert [element_type(t) for t in ("tensor(float)", "tensor(float16)", "tensor(bfloat16)")] == [FP32, FP16, BF16]
    with pytest.raises(ValueError, match="tensor\\(int64\\)"):
        element_type("tensor(int64)")
