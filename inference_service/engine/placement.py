"""Where a session's nodes ran, from onnxruntime's profile: the proof that attention and matmuls are on the GPU.

onnxruntime may assign a node the CUDA EP has no kernel for (e.g. fp32 GroupQueryAttention) to the CPU EP without
an error, copying its inputs across the bus every step. The profile of one real pass records, for every node that
ran, its op type and execution provider; a CUDA runner refuses to serve when a heavy op ran anywhere but on CUDA.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

# ops that must run on the device a model is served on (after graph optimization; fused forms included)
HEAVY_OPS = frozenset(
    {
        "GroupQueryAttention",
        "MatMulNBits",
        "MatMul",
        "FusedMatMul",
        "Gemm",
        "SimplifiedLayerNormalization",
        "SkipSimplifiedLayerNormalization",
    }
)


@dataclass(slots=True, frozen=True)
class NodeRun:
    name: str
    op_type: str
    provider: str


class PlacementError(RuntimeError):
    pass


def node_runs(profile: Path) -> list[NodeRun]:
    """One entry per node that ran in the profiled passes (first occurrence), from a profile JSON file."""
    seen: dict[str, NodeRun] = {}
    for event in json.loads(profile.read_text()):
        args = event.get("args", {})
        if event.get("cat") != "Node" or "provider" not in args or "op_name" not in args:
            continue
        name = str(event["name"]).removesuffix("_kernel_time")
        seen.setdefault(name, NodeRun(name, str(args["op_name"]), str(args["provider"])))
    return list(seen.values())


def summary(runs: list[NodeRun]) -> dict[str, dict[str, int]]:
    """op type → {provider: nodes}."""
    counts: dict[str, Counter[str]] = {}
    for run in runs:
        counts.setdefault(run.op_type, Counter())[run.provider] += 1
    return {op: dict(c) for op, c in sorted(counts.items())}


def check_placement(runs: list[NodeRun], provider: str) -> None:
    """Raise PlacementError naming the heavy nodes that ran elsewhere than on `provider` (or when none ran)."""
    if not runs:
        raise PlacementError("the profile recorded no node runs")
    misplaced = [r for r in runs if r.op_type in HEAVY_OPS and r.provider != provider]
    if misplaced:
        by_op = Counter(f"{r.op_type} on {r.provider}" for r in misplaced)
        listed = ", ".join(f"{n}× {what}" for what, n in sorted(by_op.items()))
        raise PlacementError(
            f"{len(misplaced)} attention/matmul/norm nodes did not run on {provider}: {listed} "
            f"(e.g. {misplaced[0].name}); the graph's types have no {provider} kernel — "
            "for CUDA, convert with --precision fp16 or bf16"
        )
