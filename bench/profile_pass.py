"""Where one decode pass goes: `python -m bench.profile_pass MODEL_FOLDER GRAPH.onnx [--past 100]`.

Runs GRAPH (the folder's model.onnx or a derived graph from the cache, ~/.cache/ortserve/cpu-graphs/*/model.onnx) on one
row after `--past` cached tokens under onnxruntime's profiler, and prints the median pass time and the time per op
type and per node (the slowest ten), averaged over the last ten of twenty passes.
"""

from __future__ import annotations

import argparse
import collections
import json
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from inference_service.models.folder import load_model_config
from inference_service.models.precision import element_type


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_pass", description=__doc__)
    parser.add_argument("folder", type=Path, help="the model folder (its genai_config.json gives the KV shape)")
    parser.add_argument("graph", type=Path, help="the graph to run: the folder's model.onnx or a derived one")
    parser.add_argument("--past", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    config = load_model_config(args.folder)
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.enable_profiling = True
    options.profile_file_prefix = "/tmp/ortserve-profile"
    session = ort.InferenceSession(str(args.graph), options, providers=["CPUExecutionProvider"])
    inputs = {i.name: i for i in session.get_inputs()}
    feeds: dict[str, np.ndarray] = {
        config.input_ids_name: np.array([[5]], np.int64),
        config.attention_mask_name: np.ones((1, args.past + 1), np.int64),
    }
    if "num_logits_to_keep" in inputs:
        feeds["num_logits_to_keep"] = np.array(1, np.int64)
    if "head_positions" in inputs:
        feeds["head_positions"] = np.array([[0]], np.int64)
    for i in range(config.num_layers):
        for pattern in (config.past_key_names, config.past_value_names):
            name = pattern % i
            kv = element_type(inputs[name].type).storage
            feeds[name] = np.zeros((1, config.num_kv_heads, args.past, config.head_size), kv)
    times = []
    for _ in range(20):
        start = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - start)
    print(f"median pass {np.median(times[5:]) * 1e3:.1f} ms (profiled)")
    events = json.loads(Path(session.end_profiling()).read_text())
    runs = [e for e in events if e.get("name") == "model_run"]
    since = runs[10]["ts"]
    by_op: dict[str, float] = collections.defaultdict(float)
    by_node: dict[str, float] = collections.defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= since:
            by_op[e["args"]["op_name"]] += e["dur"] / 10
            by_node[e["name"].removesuffix("_kernel_time")] += e["dur"] / 10
    for name, us in sorted(by_op.items(), key=lambda x: -x[1])[:8]:
        print(f"{name:40s} {us / 1e3:8.2f} ms")
    for name, us in sorted(by_node.items(), key=lambda x: -x[1])[:10]:
        print(f"{name:40s} {us:8.0f} µs")


if __name__ == "__main__":
    main()
