"""The screened head bounds every logit the fp32 head computes, and is built only for a tied Q8_0 head."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from inference_service.models.cpu_graphs import cpu_graphs, derive
from inference_service.models.decoder_graph import IR_VERSION, OPSETS
from inference_service.models.screened_head import HIDDEN, LOWER, POSITIONS, UPPER, screen_head

V, K = 300, 96


def tied_model(untie: bool = False) -> tuple[onnx.ModelProto, np.ndarray]:
    """x [B, S, K] → logits = x · Wᵀ where W is the Q8_0 embedding (also gathered, as the converter's graph does)."""
    rng = np.random.default_rng(0)
    q = rng.integers(0, 256, (V, K // 32, 32), dtype=np.uint8)
    scales = (rng.random((V, K // 32)) * 0.02 + 1e-3).astype(np.float32)
    w = ((q.astype(np.float32) - 128) * scales[..., None]).reshape(V, K)
    head = w.copy()
    if untie:
        head[7, 3] += 1e-3
    nodes = [
        helper.make_node("Reshape", ["embed.qweight", "embed.flat_shape"], ["flat"]),
        helper.make_node(
            "GatherBlockQuantized",
            ["flat", "ids", "embed.scales"],
            ["emb"],
            domain="com.microsoft",
            bits=8,
            block_size=32,
            gather_axis=0,
            quantize_axis=1,
        ),
        helper.make_node("MatMul", ["x", "lm_head.weight_t"], ["head_out"]),
        helper.make_node("Identity", ["head_out"], ["logits"], name="logits"),
    ]
    graph = helper.make_graph(
        nodes,
        "tied",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", K]),
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"]),
        ],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "seq", V]),
            helper.make_tensor_value_info("emb", TensorProto.FLOAT, ["batch", "seq", K]),
        ],
        [
            numpy_helper.from_array(q, "embed.qweight"),
            numpy_helper.from_array(np.array([V, K], np.int64), "embed.flat_shape"),
            numpy_helper.from_array(scales, "embed.scales"),
            numpy_helper.from_array(np.ascontiguousarray(head.T), "lm_head.weight_t"),
        ],
    )
    model = helper.make_model(graph, opset_imports=OPSETS)
    model.ir_version = IR_VERSION
    return model, w


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def test_bounds_hold_for_hidden_states_with_outliers() -> None:
    model, w = tied_model()
    screened = screen_head(model, "logits")
    assert screened is not None
    assert [o.name for o in model.graph.output] == [LOWER, UPPER, HIDDEN, "emb"]
    assert "lm_head.weight_t" not in {t.name for t in model.graph.initializer}  # the fp32 head left the graph
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 3, K)).astype(np.float32)
    x[0, 0, 5] = 60.0  # one outlier dimension, as after a final RMSNorm
    x[1] *= 1e-3
    x[2, 1] = 0.0
    ids = np.zeros((4, 3), np.int64)
    positions = np.array([0, 2, 1, 2], np.int64)  # the head runs on one position per row
    lower, upper, hidden, _ = session(model).run(None, {"x": x, "ids": ids, POSITIONS: positions[:, None]})
    rows = x[np.arange(4), positions]  # [4, K]
    exact = rows.astype(np.float64) @ w.T.astype(np.float64)
    assert lower.shape == upper.shape == (4, 1, V) and np.array_equal(hidden[:, 0], rows)
    lower, upper = lower[:, 0], upper[:, 0]
    assert (lower <= exact).all() and (exact <= upper).all()
    width, spread = upper - lower, np.ptp(exact, axis=-1)
    assert (np.median(width, axis=1) <= 0.1 * spread).all()  # a bound, not a shrug: 2–4 % of the logits' range
    full = session(screened.full).run(None, {HIDDEN: rows})[0]
    assert np.allclose(full, exact, atol=1e-4)
    assert np.array_equal(screened.weight, w)
    # several positions per row (a row that verifies a draft): [B, P, ·], the same bounds per position
    every = np.tile(np.arange(3, dtype=np.int64), (4, 1))
    lower_p, upper_p, hidden_p, _ = session(model).run(None, {"x": x, "ids": ids, POSITIONS: every})
    assert lower_p.shape == (4, 3, V) and np.array_equal(hidden_p, x)
    assert np.allclose(lower_p[np.arange(4), positions], lower) and np.allclose(upper_p[np.arange(4), positions], upper)


def test_a_head_that_is_not_the_embedding_is_left_alone() -> None:
    model, _ = tied_model(untie=True)
    before = model.SerializeToString()
    assert screen_head(model, "logits") is None
    assert model.SerializeToString() == before


def test_a_head_that_is_not_a_matmul_is_left_alone() -> None:
    model, _ = tied_model()
    assert screen_head(model, "emb") is None


def test_a_model_with_nothing_to_derive_is_not_loaded_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, _ = tied_model(untie=True)
    model_file = tmp_path / "untied.onnx"
    onnx.save(model, str(model_file))
    cache = tmp_path / "cache"
    assert derive(model_file, cache, dense=False, screen_head=True, logits_name="logits") is None

    def no_load(*_: object, **__: object) -> None:
        raise AssertionError("the model was loaded again")

    monkeypatch.setattr(onnx, "load", no_load)
    assert derive(model_file, cache, dense=False, screen_head=True, logits_name="logits") is None
    assert cpu_graphs(model_file, "logits", cache, dense=False, screen_head=True).one_row == model_file


@pytest.mark.model
def test_default_model_graphs_are_screened_and_cached(model_dir: Path, tmp_path: Path) -> None:
    def graphs() -> tuple[Path, Path | None, Path | None]:
        g = cpu_graphs(model_dir / "model.onnx", "logits", tmp_path, dense=True, screen_head=True)
        return g.one_row, g.dense, g.head

    one_row, dense, head = graphs()
    assert dense is not None and head is not None and one_row != model_dir / "model.onnx"
    assert not (dense.parent / "head_weight.npy").exists()  # the twin shares the one-row graph's head files
    stamps = [p.stat().st_mtime_ns for p in (one_row, dense, head)]
    assert graphs() == (one_row, dense, head)
    assert [p.stat().st_mtime_ns for p in (one_row, dense, head)] == stamps  # built once
    for path in (one_row, dense):
        graph = onnx.load(str(path), load_external_data=False).graph
        assert [o.name for o in graph.output][:3] == [LOWER, UPPER, HIDDEN]
        screens = [n for n in graph.node if n.name == "lm_head.screen"]
        assert len(screens) == 1 and screens[0].op_type == "MatMulNBits"
    plain = cpu_graphs(model_dir / "model.onnx", "logits", tmp_path, dense=True, screen_head=False)
    assert plain.one_row == model_dir / "model.onnx" and plain.head is None
    assert "logits" in [o.name for o in onnx.load(str(plain.dense), load_external_data=False).graph.output]
