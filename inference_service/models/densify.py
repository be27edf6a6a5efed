"""A dense twin of a model: every constant MatMulNBits becomes an fp32 MatMul over the same (dequantized) values.

onnxruntime's 4-bit kernel at fp32 accuracy beats fp32 MatMul at one row but loses from a few rows on (this CPU,
576→1536: 63 µs vs 60 µs at M=1, 384 µs vs 202 µs at M=16), so the runner keeps both graphs and picks per step.
The values are exactly those MatMulNBits computes with: W[n, k] = (q − zero_point) · scale, plus the per-block
offset of a correction that follows it in the graph (folded in: one MatMul instead of five nodes); the two 4-bit
terms of a wide code (Q5/Q6/Q8, fed [x, x] by a Concat) are summed into one weight over x.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

logger = logging.getLogger(__name__)

VERSION = 3  # 3: stacked 4-bit terms of wide codes summed into one weight


def dequantize_nbits(
    b: np.ndarray, scales: np.ndarray, zero_points: np.ndarray | None, n: int, k: int, bits: int, block_size: int
) -> np.ndarray:
    """MatMulNBits weight → float32 [N, K]."""
    blocks = -(-k // block_size)
    raw = b.reshape(n, blocks, -1)
    if bits == 4:
        q = np.empty((n, blocks, raw.shape[-1] * 2), np.float32)
        q[..., 0::2] = raw & 0x0F
        q[..., 1::2] = raw >> 4
    elif bits == 8:
        q = raw.astype(np.float32)
    else:
        raise ValueError(f"MatMulNBits with bits={bits} is not supported")
    scale = scales.astype(np.float32).reshape(n, blocks)
    if zero_points is None:
        zp = np.full((n, blocks), 2 ** (bits - 1), np.float32)
    elif zero_points.dtype == np.uint8 and bits == 4:
        packed = zero_points.reshape(n, -1)
        zp = np.stack([packed & 0x0F, packed >> 4], axis=-1).reshape(n, -1)[:, :blocks].astype(np.float32)
    else:
        zp = zero_points.astype(np.float32).reshape(n, blocks)
    w = (q - zp[..., None]) * scale[..., None]
    return w.reshape(n, -1)[:, :k]


@dataclass(slots=True, frozen=True)
class _BlockOffset:
    """Q4_1's correction after a MatMulNBits: Add(y, MatMul(ReduceSum(Reshape(x, [0, 0, -1, block])), offset_t))."""

    offset_t: np.ndarray  # float32 [K/block, N]
    output: str  # the Add's output: the corrected product
    nodes: tuple[onnx.NodeProto, ...]  # Reshape, ReduceSum, MatMul, Add


def _block_offset(
    node: onnx.NodeProto,
    producer: dict[str, onnx.NodeProto],
    consumers: dict[str, list[onnx.NodeProto]],
    inits: dict[str, onnx.TensorProto],
    n: int,
    k: int,
    block: int,
    source: str,
) -> _BlockOffset | None:
    """The block-offset correction of `node` (over its input `source`, [..., k]) as our converter writes it, or None."""

    def const(name: str) -> np.ndarray | None:
        return numpy_helper.to_array(inits[name]) if name in inits else None

    def only_use(name: str) -> onnx.NodeProto | None:
        users = consumers.get(name, [])
        return users[0] if len(users) == 1 else None

    add = only_use(node.output[0])
    if add is None or add.op_type != "Add" or len(add.input) != 2:
        return None
    matmul = producer.get(add.input[1] if add.input[0] == node.output[0] else add.input[0])
    if matmul is None or matmul.op_type != "MatMul" or only_use(matmul.output[0]) is not add:
        return None
    offset_t, reduce = const(matmul.input[1]), producer.get(matmul.input[0])
    if offset_t is None or offset_t.shape != (-(-k // block), n):
        return None
    if reduce is None or reduce.op_type != "ReduceSum" or only_use(reduce.output[0]) is not matmul:
        return None
    attrs = {a.name: helper.get_attribute_value(a) for a in reduce.attribute}
    axes = const(reduce.input[1]) if len(reduce.input) > 1 else None
    reshape = producer.get(reduce.input[0])
    if attrs.get("keepdims", 1) != 0 or axes is None or axes.tolist() != [-1]:
        return None
    if reshape is None or reshape.op_type != "Reshape" or only_use(reshape.output[0]) is not reduce:
        return None
    target = const(reshape.input[1])
    if reshape.input[0] != source or target is None or target.tolist() != [0, 0, -1, block]:
        return None
    return _BlockOffset(offset_t.astype(np.float32), add.output[0], (reshape, reduce, matmul, add))


def _stacked_terms(
    name: str, producer: dict[str, onnx.NodeProto], consumers: dict[str, list[onnx.NodeProto]]
) -> tuple[str, int]:
    """(x, terms) when `name` is Concat([x] · terms) along the last axis used only here, else (name, 1)."""
    concat = producer.get(name)
    if concat is None or concat.op_type != "Concat" or len(consumers.get(name, [])) != 1:
        return name, 1
    axis = next((helper.get_attribute_value(a) for a in concat.attribute if a.name == "axis"), None)
    if axis != -1 or len(set(concat.input)) != 1:
        return name, 1
    return concat.input[0], len(concat.input)


def densify(model: onnx.ModelProto) -> int:
    """Rewrite `model` in place; returns how many MatMulNBits nodes became MatMul."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    replaced: dict[int, list[onnx.NodeProto]] = {}  # id(node) → its replacement; [] = removed
    dropped: set[str] = set()
    count = 0
    for node in graph.node:
        inputs = list(node.input) + [""] * (6 - len(node.input))
        const = all(name in inits for name in inputs[1:3]) and (not inputs[3] or inputs[3] in inits)
        if node.op_type != "MatMulNBits" or not const or inputs[4]:  # g_idx: leave as is
            continue
        if inits[inputs[2]].data_type != onnx.TensorProto.FLOAT:  # fp16/bf16 activations: an fp32 twin breaks types
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        n, k, block = int(attrs["N"]), int(attrs["K"]), int(attrs["block_size"])
        zp = numpy_helper.to_array(inits[inputs[3]]) if inputs[3] else None
        w = dequantize_nbits(
            numpy_helper.to_array(inits[inputs[1]]),
            numpy_helper.to_array(inits[inputs[2]]),
            zp,
            n,
            k,
            int(attrs["bits"]),
            block,
        )
        outputs = list(node.output)
        source, terms = _stacked_terms(inputs[0], producer, consumers)
        if terms > 1:  # the converter's wide codes: [x, x] · [W0; W1] = x · (W0 + W1)
            k //= terms
            w = w.reshape(n, terms, k).sum(axis=1)
            replaced[id(producer[inputs[0]])] = []
        fold = None if inputs[5] else _block_offset(node, producer, consumers, inits, n, k, block, source)
        if fold is not None:
            w += np.repeat(fold.offset_t.T, block, axis=1)[:, :k]
            outputs = [fold.output]
            for removed in fold.nodes:
                replaced[id(removed)] = []
            dropped.update(fold.nodes[0].input[1:] + fold.nodes[1].input[1:] + fold.nodes[2].input[1:])
        weight = f"{node.name or node.output[0]}.dense_weight_t"
        graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(w.T), weight))
        dropped.update(name for name in inputs[1:4] if name)
        if inputs[5]:
            mid = f"{node.output[0]}.no_bias"
            replaced[id(node)] = [
                helper.make_node("MatMul", [source, weight], [mid], name=f"{node.name}.dense"),
                helper.make_node("Add", [mid, inputs[5]], outputs, name=f"{node.name}.bias"),
            ]
        else:
            replaced[id(node)] = [helper.make_node("MatMul", [source, weight], outputs, name=f"{node.name}.dense")]
        count += 1
    nodes = [new for node in graph.node for new in replaced.get(id(node), [node])]
    still_used = {name for node in nodes for name in node.input}
    keep = [t for t in graph.initializer if t.name not in dropped or t.name in still_used]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(keep)
    return count
