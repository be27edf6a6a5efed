"""Node placement from onnxruntime's profile: parsed from a real CPU session's profile, checked per provider."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from inference_service.engine.placement import PlacementError, check_placement, node_runs, summary


def profiled_runs(tmp_path: Path) -> list:  # type: ignore[type-arg]
    weight = numpy_helper.from_array(np.ones((4, 3), np.float32), "w")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["y"], name="proj"),
            helper.make_node("Relu", ["y"], ["z"], name="act"),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 3])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    onnx.save(model, str(tmp_path / "m.onnx"))
    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(tmp_path / "profile")
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), options, providers=["CPUExecutionProvider"])
    session.run(None, {"x": np.ones((2, 4), np.float32)})
    return node_runs(Path(session.end_profiling()))


def test_profile_names_each_node_with_its_op_and_provider(tmp_path: Path) -> None:
    runs = profiled_runs(tmp_path)
    assert {(r.name, r.op_type, r.provider) for r in runs} == {
        ("proj", "MatMul", "CPUExecutionProvider"),
        ("act", "Relu", "CPUExecutionProvider"),
    }
    assert summary(runs) == {"MatMul": {"CPUExecutionProvider": 1}, "Relu": {"CPUExecutionProvider": 1}}


def test_heavy_nodes_off_the_device_are_refused(tmp_path: Path) -> None:
    runs = profiled_runs(tmp_path)
    check_placement(runs, "CPUExecutionProvider")
    with pytest.raises(PlacementError, match=r"1× MatMul on CPUExecutionProvider.*proj"):
        check_placement(runs, "CUDAExecutionProvider")  # Relu is light: only the MatMul is named
    with pytest.raises(PlacementError, match="no node runs"):
        check_placement([], "CUDAExecutionProvider")
