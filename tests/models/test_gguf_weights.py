"""Every GGUF block type transcodes to weights bit-identical to `gguf.quants.dequantize`, and the ONNX form the
graph builder writes for it (MatMulNBits with zero points, stacked terms, blocksum offsets) computes x·Wᵀ."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from gguf import GGML_QUANT_SIZES, quants
from gguf import GGMLQuantizationType as QT
from onnx import TensorProto, helper

from inference_service.models.decoder_graph import IR_VERSION, OPSETS, _Builder
from inference_service.models.gguf_weights import BlockQuantized, Dense, Weight, dequantize, stack, transcode

# where each block keeps its f16 scales (d, dmin): random bytes there could be inf/NaN
SCALE_BYTES = {
    QT.Q4_0: [0],
    QT.Q4_1: [0, 2],
    QT.Q5_0: [0],
    QT.Q5_1: [0, 2],
    QT.Q8_0: [0],
    QT.Q2_K: [80, 82],
    QT.Q3_K: [108],
    QT.Q4_K: [0, 2],
    QT.Q5_K: [0, 2],
    QT.Q6_K: [208],
    QT.IQ4_NL: [0],
}
LINEAR = [QT.Q4_0, QT.Q4_1, QT.Q5_0, QT.Q5_1, QT.Q8_0, QT.Q2_K, QT.Q3_K, QT.Q4_K, QT.Q5_K, QT.Q6_K]
# ONNX vs float64 x·Wᵀ: fp32 accumulation, so relative to Σ|x|·|w| (observed ≤ 1.2e-7 of it; a wrong code, scale or
# offset is off by ~1e-2 of it)
REL = 2e-6


def assert_product(actual: np.ndarray, x: np.ndarray, w: np.ndarray) -> None:
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    bound = REL * (np.abs(x64) @ np.abs(w64).T)
    err = np.abs(actual - x64 @ w64.T)
    assert np.all(err <= bound), float(np.max(err / bound)) * REL


def random_tensor(qtype: QT, n: int, k: int, seed: int) -> np.ndarray:
    """Random but valid raw blocks [N, K/block·bytes]: random codes, finite positive f16 scales."""
    rng = np.random.default_rng(seed)
    block, size = GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, (n, k // block, size), dtype=np.uint8)
    for at in SCALE_BYTES[qtype]:
        raw[..., at : at + 2] = rng.uniform(0.001, 0.05, (n, k // block)).astype(np.float16)[..., None].view(np.uint8)
    return raw.reshape(n, -1)


@pytest.mark.parametrize("qtype", LINEAR, ids=lambda q: q.name)
def test_weights_are_bit_identical_to_gguf(qtype: QT) -> None:
    raw = random_tensor(qtype, 8, 512, seed=int(qtype))
    w = transcode(raw, qtype, 8, 512)
    assert isinstance(w, BlockQuantized) and w.bits == 4
    expected = quants.dequantize(raw, qtype)
    np.testing.assert_array_equal(dequantize(w), expected)


def test_non_linear_codebooks_fall_back_to_dense() -> None:
    raw = random_tensor(QT.IQ4_NL, 4, 256, seed=3)
    w = transcode(raw, QT.IQ4_NL, 4, 256)
    assert isinstance(w, Dense)
    np.testing.assert_array_equal(w.weight, quants.dequantize(raw, QT.IQ4_NL))


def run_linear(w: Weight, x: np.ndarray) -> np.ndarray:
    b = _Builder(accuracy_level=0)
    y = b.linear("x", w, "proj")
    b.nodes.append(helper.make_node("Identity", [y], ["y"]))
    graph = helper.make_graph(
        b.nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "S", x.shape[-1]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", "S", "N"])],
        b.inits,
    )
    model = helper.make_model(graph, opset_imports=OPSETS)
    model.ir_version = IR_VERSION
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


@pytest.mark.parametrize("qtype", LINEAR, ids=lambda q: q.name)
def test_onnx_form_computes_the_product(qtype: QT) -> None:
    n, k = 24, 512
    raw = random_tensor(qtype, n, k, seed=100 + int(qtype))
    x = np.random.default_rng(1).standard_normal((2, 3, k)).astype(np.float32)
    assert_product(run_linear(transcode(raw, qtype, n, k), x), x, quants.dequantize(raw, qtype))


def test_fused_projection_of_mixed_block_types() -> None:
    """q|k|v (and gate|up) stay one projection when the parts differ in block size, terms and offsets."""
    k = 512
    types = [QT.Q4_K, QT.Q6_K, QT.Q5_0, QT.Q2_K, QT.Q4_1, QT.Q8_0]
    raws = [random_tensor(t, 8 + i, k, seed=i) for i, t in enumerate(types)]
    fused = stack([transcode(r, t, r.shape[0], k) for r, t in zip(raws, types, strict=True)])
    assert isinstance(fused, BlockQuantized) and (fused.block, fused.terms) == (16, 2)
    expected_w = np.concatenate([quants.dequantize(r, t) for r, t in zip(raws, types, strict=True)])
    np.testing.assert_array_equal(dequantize(fused), expected_w)
    x = np.random.default_rng(2).standard_normal((1, 4, k)).astype(np.float32)
    assert_product(run_linear(fused, x), x, expected_w)


def test_same_types_stack_without_conversion() -> None:
    raws = [random_tensor(QT.Q5_0, 16, 256, seed=i) for i in range(3)]
    fused = stack([transcode(r, QT.Q5_0, 16, 256) for r in raws])
    assert isinstance(fused, BlockQuantized) and (fused.n, fused.block, fused.terms) == (48, 32, 2)
    np.testing.assert_array_equal(dequantize(fused), np.concatenate([quants.dequantize(r, QT.Q5_0) for r in raws]))
