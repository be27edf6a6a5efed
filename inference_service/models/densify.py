"""A dense twin of a model: every constant MatMulNBits becomes an fp32 MatMul over the same (dequantized) values.

onnxruntime's 4-bit kernel at fp32 accuracy beats fp32 MatMul at one row but loses from a few rows on (this CPU,
576→1536: 63 µs vs 60 µs at M=1, 384 µs vs 202 µs at M=16), so the runner keeps both graphs and picks per step.
The values are exactly those MatMulNBits computes with: W[n, k] = (q − zero_point) · scale.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

logger = logging.getLogger(__name__)

VERSION = 1


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


def densify(model: onnx.ModelProto) -> int:
    """Rewrite `model` in place; returns how many MatMulNBits nodes became MatMul."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    nodes: list[onnx.NodeProto] = []
    dropped: set[str] = set()
    count = 0
    for node in graph.node:
        inputs = list(node.input) + [""] * (6 - len(node.input))
        const = all(name in inits for name in inputs[1:3]) and (not inputs[3] or inputs[3] in inits)
        if node.op_type != "MatMulNBits" or not const or inputs[4]:  # g_idx: leave as is
            nodes.append(node)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        zp = numpy_helper.to_array(inits[inputs[3]]) if inputs[3] else None
        w = dequantize_nbits(
            numpy_helper.to_array(inits[inputs[1]]),
            numpy_helper.to_array(inits[inputs[2]]),
            zp,
            int(attrs["N"]),
            int(attrs["K"]),
            int(attrs["bits"]),
            int(attrs["block_size"]),
        )
        weight = f"{node.name or node.output[0]}.dense_weight_t"
        graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(w.T), weight))
        dropped.update(name for name in inputs[1:4] if name)
        if inputs[5]:
            mid = f"{node.output[0]}.no_bias"
            nodes.append(helper.make_node("MatMul", [inputs[0], weight], [mid], name=f"{node.name}.dense"))
            nodes.append(helper.make_node("Add", [mid, inputs[5]], list(node.output), name=f"{node.name}.bias"))
        else:
            nodes.append(helper.make_node("MatMul", [inputs[0], weight], list(node.output), name=f"{node.name}.dense"))
        count += 1
    still_used = {name for node in nodes for name in node.input}
    keep = [t for t in graph.initializer if t.name not in dropped or t.name in still_used]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(keep)
    return count


def _source_key(model_file: Path) -> str:
    digest = hashlib.sha256(f"{VERSION}:{model_file.resolve()}".encode())
    for path in sorted(model_file.parent.glob(model_file.name + "*")):
        stat = path.stat()
        digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def dense_model_path(model_file: Path, cache_dir: Path) -> Path | None:
    """Path of the dense twin (built and cached on first use), or None when the model has no MatMulNBits."""
    out_dir = cache_dir / _source_key(model_file)
    out = out_dir / "model.onnx"
    if out.exists():
        return out
    model = onnx.load(str(model_file))
    if not densify(model):
        return None
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    onnx.save_model(
        model,
        str(tmp / "model.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="model.onnx.data",
        size_threshold=1024,
    )
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    logger.info("wrote the dense twin of %s to %s", model_file, out)
    return out
