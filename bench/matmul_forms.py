"""Time the ONNX forms a GGUF projection can take, per shape: `python -m bench.matmul_forms`.

One-node graphs on the CPU EP (2 intra-op threads), random weights, median µs per call after a warm-up, at M rows.
The converter's choices (docs/converter.md) follow from these: 4-bit MatMulNBits (implicit or uint8 zero points,
block 32 or 16) for codes of up to 4 bits, two stacked 4-bit terms for 5/6/8-bit codes; MatMulNBits at 2 or 8 bits
at fp32 accuracy is 10–40× slower. Weights here fit the caches, unlike a whole model: fp32 MatMul looks better
than it is in a real pass (it reads 4× to 8× the bytes).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from inference_service.models.decoder_graph import IR_VERSION, OPSETS


@dataclass(frozen=True, slots=True)
class Form:
    name: str
    bits: int = 4  # 0: fp32 MatMul
    block: int = 32
    zero_points: bool = False
    terms: int = 1  # stacked along K over Concat([x] · terms)


FORMS = (
    Form("4-bit, block 32, implicit zero point (Q4_0, Q4_1)"),
    Form("4-bit, block 32, uint8 zero points (Q4_K)", zero_points=True),
    Form("4-bit, block 16, uint8 zero points (Q3_K, Q2_K)", block=16, zero_points=True),
    Form("two 4-bit terms, block 32 (Q5_0, Q5_1, Q5_K, Q8_0)", zero_points=True, terms=2),
    Form("two 4-bit terms, block 16 (Q6_K)", block=16, zero_points=True, terms=2),
    Form("2-bit, block 16, zero points", bits=2, block=16, zero_points=True),
    Form("8-bit, block 32", bits=8),
    Form("fp32 MatMul", bits=0),
)
SHAPES = ((640, 1536), (640, 4096), (1024, 640), (2048, 640), (576, 1536))  # Gemma 3 270M's, SmolLM2's gate|up


def session(form: Form, k: int, n: int) -> ort.InferenceSession:
    rng = np.random.default_rng(0)
    nodes, inits, x = [], [], "x"
    if form.terms > 1:
        nodes.append(helper.make_node("Concat", ["x"] * form.terms, ["xx"], axis=-1))
        x = "xx"
    kk = form.terms * k
    if form.bits == 0:
        inits.append(numpy_helper.from_array(rng.standard_normal((k, n)).astype(np.float32), "w"))
        nodes.append(helper.make_node("MatMul", ["x", "w"], ["y"]))
    else:
        blocks = kk // form.block
        q = rng.integers(0, 256, (n, blocks, form.block * form.bits // 8), dtype=np.uint8)
        inits += [numpy_helper.from_array(q, "q"), numpy_helper.from_array(rng.random(n * blocks, np.float32), "s")]
        inputs = [x, "q", "s"]
        if form.zero_points:
            per_byte = 8 // form.bits
            zp = rng.integers(0, 256, n * -(-blocks // per_byte), dtype=np.uint8)
            inits.append(numpy_helper.from_array(zp, "z"))
            inputs.append("z")
        nodes.append(
            helper.make_node(
                "MatMulNBits",
                inputs,
                ["y"],
                domain="com.microsoft",
                K=kk,
                N=n,
                bits=form.bits,
                block_size=form.block,
                accuracy_level=0,
            )
        )
    graph = helper.make_graph(
        nodes,
        "form",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["m", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["m", n])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=OPSETS)
    model.ir_version = IR_VERSION
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def median_us(s: ort.InferenceSession, m: int, k: int, calls: int) -> float:
    x = np.random.default_rng(1).standard_normal((m, k)).astype(np.float32)
    for _ in range(5):
        s.run(None, {"x": x})
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        s.run(None, {"x": x})
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.matmul_forms", description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--calls", type=int, default=30)
    args = parser.parse_args(argv)
    print("| K × N | form | " + " | ".join(f"M={m} µs" for m in args.rows) + " |")
    print("|---|---|" + "---|" * len(args.rows))
    for k, n in SHAPES:
        for form in FORMS:
            s = session(form, k, n)
            cells = " | ".join(f"{median_us(s, m, k, args.calls):.0f}" for m in args.rows)
            print(f"| {k} × {n} | {form.name} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
