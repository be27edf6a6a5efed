"""A screened LM head: int8 bounds on every logit instead of the fp32 head, for an exact top-k outside the graph.

The default model's head is its tied Q8_0 embedding (49,152 × 576). As fp32 MatMul it reads 113 MB per pass:
~2.7 ms of a ~12 ms one-row decode pass on this CPU. onnxruntime's 8-bit MatMulNBits at accuracy level 4 reads the
Q8_0 bytes as they are (0.84 ms) but rounds the activations x to int8 per block b of 32 (scale amax_b / 127,
round to nearest), so each logit may be off by at most

    Σ_b (amax_b / 254) · Σ_{k∈b} |w_k|        (+ 1e-5 · Σ_b amax_b · Σ_{k∈b} |w_k| for fp32 rounding)

The screened graph outputs lower and upper bounds on every logit (that screen ∓ this bound) and the final hidden
state; engine/lm_head.py recomputes exactly only the tokens that can still be chosen. The full fp32 head becomes a
graph of its own (hidden → logits) for rows that need the whole distribution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from inference_service.models.decoder_graph import IR_VERSION, OPSETS

VERSION = 3  # 2: the head runs on one position per row (head_positions); 3: on P positions per row
LOWER, UPPER, HIDDEN = "logits_lower", "logits_upper", "hidden"
POSITIONS = "head_positions"  # input [B, P]: which kept positions of each row the head runs on
BLOCK = 32
# per-element rounding of the activations (scale/2 = amax/254), plus fp32 slack far above the kernel's rounding
BOUND_PER_AMAX = np.float32(1 / 254 + 1e-5)


def _const(model: onnx.ModelProto, name: str) -> np.ndarray | None:
    for t in model.graph.initializer:
        if t.name == name:
            return numpy_helper.to_array(t)
    return None


def _tied_q8_embedding(model: onnx.ModelProto, head_weight: np.ndarray) -> tuple[str, np.ndarray] | None:
    """(name of the uint8 [V, K/32, 32] initializer, scales [V, K/32]) when the head is exactly the Q8_0 embedding."""
    producer = {out: node for node in model.graph.node for out in node.output}
    for node in model.graph.node:
        if node.op_type != "GatherBlockQuantized" or len(node.input) > 3:  # explicit zero points: not ours
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if attrs.get("bits", 4) != 8 or attrs.get("block_size") != BLOCK or attrs.get("quantize_axis") != 1:
            continue
        data = node.input[0]
        if data in producer and producer[data].op_type == "Reshape":  # the converter flattens [V, K/32, 32]
            data = producer[data].input[0]
        q, scales = _const(model, data), _const(model, node.input[2])
        if q is None or scales is None or q.dtype != np.uint8 or q.ndim != 3 or q.shape[2] != BLOCK:
            continue
        w = ((q.astype(np.float32) - 128) * scales[..., None]).reshape(q.shape[0], -1)  # exact in fp32
        if w.shape == head_weight.shape and np.array_equal(w, head_weight):
            return data, scales.astype(np.float32)
    return None


@dataclass(slots=True, frozen=True)
class ScreenedHead:
    full: onnx.ModelProto  # hidden → fp32 logits, for rows that need the whole distribution
    weight: np.ndarray  # float32 [V, K]: the head's exact values, to recompute the candidates


def screen_head(model: onnx.ModelProto, logits_name: str) -> ScreenedHead | None:
    """Rewrite `model` in place to output LOWER/UPPER/HIDDEN [B, P, ·] for the kept positions POSITIONS[b, :] of each
    row instead of `logits_name` [B, kept, V] (P = 1 but for rows that verify a draft: every position).

    None (and `model` untouched) unless the head is an fp32 MatMul whose weight is exactly a Q8_0 embedding.
    """
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    last = producer.get(logits_name)
    identity = last if last is not None and last.op_type == "Identity" else None
    matmul = producer.get(identity.input[0]) if identity is not None else last
    if matmul is None or matmul.op_type != "MatMul":
        return None
    weight_t = _const(model, matmul.input[1])  # [K, V]
    if weight_t is None or weight_t.ndim != 2 or weight_t.dtype != np.float32 or weight_t.shape[0] % BLOCK:
        return None
    head_weight = np.ascontiguousarray(weight_t.T)  # [V, K]
    tied = _tied_q8_embedding(model, head_weight)
    if tied is None:
        return None
    qweight, scales = tied
    vocab, k = head_weight.shape
    hidden = "lm_head.gather/out"  # [B, P, K]: the positions of each row that are sampled
    abs_sum = np.abs(head_weight.reshape(vocab, k // BLOCK, BLOCK)).sum(-1)  # [V, K/32]: Σ_{k∈b} |w_k|
    inits = [
        numpy_helper.from_array(scales.reshape(-1), "lm_head.screen.scales"),
        numpy_helper.from_array(np.ascontiguousarray((abs_sum * BOUND_PER_AMAX).T), "lm_head.screen.bound_t"),
        numpy_helper.from_array(np.array([0, 0, k // BLOCK, BLOCK], np.int64), "lm_head.screen.blocks"),
        numpy_helper.from_array(np.array([-1], np.int64), "lm_head.screen.last_axis"),
        numpy_helper.from_array(np.array([0, -1, 1], np.int64), "lm_head.positions_shape"),
    ]
    nodes = [
        # kept [B, kept positions, K] → each row's positions head_positions[b, :] (right-padded prefill rows end at
        # different positions; the unscreened graph computes the head for every kept position instead)
        helper.make_node(
            "Reshape", [POSITIONS, "lm_head.positions_shape"], ["lm_head.positions/out"], name="lm_head.positions"
        ),
        helper.make_node(
            "GatherND",
            [matmul.input[0], "lm_head.positions/out"],
            [hidden],
            name="lm_head.gather",
            batch_dims=1,
        ),
        helper.make_node(
            "MatMulNBits",
            [hidden, qweight, "lm_head.screen.scales"],
            ["lm_head.screen/out"],
            name="lm_head.screen",
            domain="com.microsoft",
            K=k,
            N=vocab,
            bits=8,
            block_size=BLOCK,
            accuracy_level=4,  # int8 activations: the error the bound covers
        ),
        helper.make_node("Reshape", [hidden, "lm_head.screen.blocks"], ["lm_head.blocks/out"], name="lm_head.blocks"),
        helper.make_node("Abs", ["lm_head.blocks/out"], ["lm_head.abs/out"], name="lm_head.abs"),
        helper.make_node(
            "ReduceMax",
            ["lm_head.abs/out", "lm_head.screen.last_axis"],
            ["lm_head.amax/out"],
            name="lm_head.amax",
            keepdims=0,
        ),  # [B, S, K/32]
        helper.make_node(
            "MatMul", ["lm_head.amax/out", "lm_head.screen.bound_t"], ["lm_head.bound/out"], name="lm_head.bound"
        ),
        helper.make_node("Sub", ["lm_head.screen/out", "lm_head.bound/out"], [LOWER], name=LOWER),
        helper.make_node("Add", ["lm_head.screen/out", "lm_head.bound/out"], [UPPER], name=UPPER),
        helper.make_node("Identity", [hidden], [HIDDEN], name=HIDDEN),
    ]
    removed = {id(matmul)} | ({id(identity)} if identity is not None else set())
    kept = [n for n in graph.node if id(n) not in removed]
    del graph.node[:]
    graph.node.extend(kept + nodes)
    still_used = {name for node in graph.node for name in node.input}
    keep = [t for t in graph.initializer if t.name in still_used]
    del graph.initializer[:]
    graph.initializer.extend(keep + inits)
    old = next(o for o in graph.output if o.name == logits_name)
    batch = old.type.tensor_type.shape.dim[0].dim_param or "batch"
    outputs = [
        helper.make_tensor_value_info(LOWER, TensorProto.FLOAT, [batch, "head_rows", vocab]),
        helper.make_tensor_value_info(UPPER, TensorProto.FLOAT, [batch, "head_rows", vocab]),
        helper.make_tensor_value_info(HIDDEN, TensorProto.FLOAT, [batch, "head_rows", k]),
    ]
    graph.input.append(helper.make_tensor_value_info(POSITIONS, TensorProto.INT64, [batch, "head_rows"]))
    rest = [o for o in graph.output if o.name != logits_name]
    del graph.output[:]
    graph.output.extend(outputs + rest)
    return ScreenedHead(full_head_model(head_weight), head_weight)


def full_head_model(head_weight: np.ndarray) -> onnx.ModelProto:
    """hidden [rows, K] → logits [rows, V] = hidden · Wᵀ in fp32, the head as the unscreened graph computes it."""
    vocab, k = head_weight.shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", [HIDDEN, "lm_head.weight_t"], ["logits"], name="lm_head")],
        "lm_head",
        [helper.make_tensor_value_info(HIDDEN, TensorProto.FLOAT, ["rows", k])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["rows", vocab])],
        [numpy_helper.from_array(np.ascontiguousarray(head_weight.T), "lm_head.weight_t")],
    )
    model = helper.make_model(graph, opset_imports=OPSETS, producer_name="ortserve")
    model.ir_version = IR_VERSION
    return model
