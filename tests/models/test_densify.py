"""The dense twin computes what MatMulNBits computes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from inference_service.models.cpu_graphs import derive
from inference_service.models.decoder_graph import IR_VERSION, OPSETS, _Builder
from inference_service.models.densify import densify
from inference_service.models.gguf_weights import BlockQuantized

K, N, BLOCK = 96, 40, 32


def nbits_model(bits: int, zero_points: np.ndarray | None, bias: bool) -> onnx.ModelProto:
    rng = np.random.default_rng(bits)
    blob = BLOCK * bits // 8
    inits = [
        numpy_helper.from_array(rng.integers(0, 256, (N, K // BLOCK, blob), dtype=np.uint8), "B"),
        numpy_helper.from_array(rng.random(N * (K // BLOCK)).astype(np.float32), "S"),
    ]
    inputs = ["A", "B", "S"]
    if zero_points is not None:
        inits.append(numpy_helper.from_array(zero_points, "Z"))
        inputs.append("Z")
    if bias:
        inputs += ["", "bias"] if zero_points is not None else ["", "", "bias"]  # bias is input 5
        inits.append(numpy_helper.from_array(rng.standard_normal(N).astype(np.float32), "bias"))
    node = helper.make_node(
        "MatMulNBits",
        inputs,
        ["Y"],
        domain="com.microsoft",
        K=K,
        N=N,
        bits=bits,
        block_size=BLOCK,
        accuracy_level=0,
        name="mm",
    )
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("A", TensorProto.FLOAT, ["M", K])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["M", N])],
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)]
    )
    model.ir_version = 10
    return model


def run(model: onnx.ModelProto, a: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"A": a})[0]


@pytest.mark.parametrize(
    ("bits", "zero_points", "bias"),
    [
        (4, None, False),
        (4, (np.arange(N * 2) % 256).astype(np.uint8), False),  # packed 4-bit zero points, 3 blocks → 2 bytes per row
        (4, np.linspace(0, 15, N * 3).astype(np.float32), False),
        (8, None, False),
        (4, None, True),
    ],
    ids=["4bit", "4bit-packed-zp", "4bit-float-zp", "8bit", "4bit-bias"],
)
def test_dense_twin_matches_matmulnbits(bits: int, zero_points: np.ndarray | None, bias: bool) -> None:
    model = nbits_model(bits, zero_points, bias)
    a = np.random.default_rng(0).standard_normal((5, K)).astype(np.float32)
    expected = run(model, a)
    dense = onnx.ModelProto()
    dense.CopyFrom(model)
    assert densify(dense) == 1
    assert [n.op_type for n in dense.graph.node] == (["MatMul", "Add"] if bias else ["MatMul"])
    assert np.allclose(run(dense, a), expected, rtol=1e-5, atol=1e-4)


@pytest.mark.model
def test_default_model_dense_twin_is_cached(model_dir: Path, tmp_path: Path) -> None:
    def dense() -> Path:
        derived = derive(model_dir / "model.onnx", tmp_path, dense=True, screen_head=False, logits_name="logits")
        assert derived is not None and derived.head is None
        return derived.model

    first = dense()
    mtime = first.stat().st_mtime_ns
    assert dense() == first
    assert first.stat().st_mtime_ns == mtime
    nodes = onnx.load(str(first), load_external_data=False).graph.node
    ops = {n.op_type for n in nodes}
    assert "MatMulNBits" not in ops and "GroupQueryAttention" in ops
    # every Q4_1 correction is folded: the only ReduceSum left sums the attention mask
    assert [n.input[0] for n in nodes if n.op_type == "ReduceSum"] == ["attention_mask"]


def test_q4_1_block_offset_is_folded_into_the_dense_weight() -> None:
    """The converter's Q4_1 form (MatMulNBits + blocksum·offset) becomes one MatMul with the same values."""
    rng = np.random.default_rng(7)
    q = rng.integers(0, 16, (N, K), dtype=np.uint8)
    packed = (q[:, 0::2] | (q[:, 1::2] << 4)).reshape(N, K // BLOCK, BLOCK // 2)
    d = rng.random((N, K // BLOCK)).astype(np.float32)
    m = -rng.random((N, K // BLOCK)).astype(np.float32)
    builder = _Builder(accuracy_level=0)
    y = builder.linear("A", BlockQuantized(4, N, K, packed, d, 8 * d + m), "proj")
    builder.nodes.append(helper.make_node("Identity", [y], ["Y"]))
    graph = helper.make_graph(
        builder.nodes,
        "g",
        [helper.make_tensor_value_info("A", TensorProto.FLOAT, ["B", "S", K])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["B", "S", N])],
        builder.inits,
    )
    model = helper.make_model(graph, opset_imports=OPSETS)
    model.ir_version = IR_VERSION
    a = rng.standard_normal((2, 3, K)).astype(np.float32)
    w = d.repeat(BLOCK, axis=1) * q + m.repeat(BLOCK, axis=1)  # Q4_1: w = d·q + m
    expected = a.astype(np.float64) @ w.T.astype(np.float64)
    assert np.allclose(run(model, a), expected, rtol=1e-5, atol=1e-4)  # the converter's form, before
    assert densify(model) == 1
    assert [n.op_type for n in model.graph.node] == ["MatMul", "Identity"]
    assert [t.name for t in model.graph.initializer] == [model.graph.node[0].input[1]]  # nothing left over
    assert np.allclose(run(model, a), expected, rtol=1e-5, atol=1e-4)


def test_stacked_terms_and_offsets_of_mixed_k_quants_become_one_matmul() -> None:
    """A fused projection of K-quant parts (two 4-bit terms over Concat([x, x]), zero points, blocksum offsets)
    becomes one MatMul over x with exactly the GGUF's values."""
    from gguf import GGMLQuantizationType as QT
    from gguf import quants

    from inference_service.models.gguf_weights import stack, transcode
    from tests.models.test_gguf_weights import random_tensor

    k = 256
    types = [QT.Q4_K, QT.Q6_K, QT.Q5_0]
    raws = [random_tensor(t, 16, k, seed=i) for i, t in enumerate(types)]
    builder = _Builder(accuracy_level=0)
    y = builder.linear("A", stack([transcode(r, t, 16, k) for r, t in zip(raws, types, strict=True)]), "proj")
    builder.nodes.append(helper.make_node("Identity", [y], ["Y"]))
    graph = helper.make_graph(
        builder.nodes,
        "g",
        [helper.make_tensor_value_info("A", TensorProto.FLOAT, ["B", "S", k])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["B", "S", 48])],
        builder.inits,
    )
    model = helper.make_model(graph, opset_imports=OPSETS)
    model.ir_version = IR_VERSION
    assert {"Concat", "MatMulNBits", "ReduceSum"} <= {n.op_type for n in model.graph.node}
    w = np.concatenate([quants.dequantize(r, t) for r, t in zip(raws, types, strict=True)]).astype(np.float64)
    a = np.random.default_rng(5).standard_normal((2, 3, k)).astype(np.float32)
    expected = a.astype(np.float64) @ w.T
    assert densify(model) == 1
    assert [n.op_type for n in model.graph.node] == ["MatMul", "Identity"]
    weight = numpy_helper.to_array(model.graph.initializer[0])
    np.testing.assert_array_equal(weight.T, w.astype(np.float32))
    assert np.allclose(run(model, a), expected, rtol=1e-5, atol=1e-4)
