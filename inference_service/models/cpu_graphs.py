"""The CPU graphs: derived from a model file at load time (dense twin, screened head), built once and cached on disk
in paths.cpu_graphs_dir().

The folder for one derivation holds model.onnx (+ .data) and, when the head of the one-row graph was screened,
head.onnx (+ .data) and the head's values as head_weight.npy (memory-mapped by the engine); the screened dense
twin uses those.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from inference_service.models import densify, screened_head
from inference_service.models.precision import FP32, float_type

logger = logging.getLogger(__name__)


@dataclass(slots=True, frozen=True)
class Derived:
    model: Path
    head: Path | None  # the full fp32 head (hidden → logits) when the model's head was screened

    @classmethod
    def found_in(cls, out_dir: Path) -> Derived:
        head = out_dir / "head.onnx"
        return cls(out_dir / "model.onnx", head if head.exists() else None)


def _source_key(model_file: Path, steps: str) -> str:
    digest = hashlib.sha256(f"{steps}:{model_file.resolve()}".encode())
    for path in sorted(model_file.parent.glob(model_file.name + "*")):
        stat = path.stat()
        digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def _save(model: onnx.ModelProto, path: Path) -> None:
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=path.name + ".data",
        size_threshold=1024,
    )


def derive(model_file: Path, cache_dir: Path, *, dense: bool, screen_head: bool, logits_name: str) -> Derived | None:
    """The model with the asked derivations applied (cached), or None when none applies.

    dense: every MatMulNBits becomes an fp32 MatMul (None when there is none); screen_head: the tied Q8_0 head
    becomes bounds + hidden state (skipped when the head is not one).
    """
    steps = ",".join(
        ([f"dense{densify.VERSION}"] if dense else []) + ([f"screen{screened_head.VERSION}"] if screen_head else [])
    )
    out_dir = cache_dir / _source_key(model_file, steps)
    nothing = out_dir.with_name(out_dir.name + ".none")  # none applies: remembered, so the model is not reloaded
    if (out_dir / "model.onnx").exists():
        return Derived.found_in(out_dir)
    if nothing.exists():
        return None
    model = onnx.load(str(model_file))
    types = graph_types(model)
    if types != {FP32.name}:  # both derivations compute in fp32: a graph of other types would break
        logger.info("%s has %s inputs/outputs: no derived CPU graphs", model_file, "/".join(sorted(types)))
    elif not dense or densify.densify(model):  # with dense asked, only a model with MatMulNBits has a twin
        screened = screened_head.screen_head(model, logits_name) if screen_head else None
        if dense or screened is not None:
            head_files = None if dense else screened  # the dense twin shares the one-row graph's head files
            return _write(model, head_files, out_dir, f"{model_file} ({steps})")
    with contextlib.suppress(OSError):  # best effort: a read-only cache just loads the model again next time
        cache_dir.mkdir(parents=True, exist_ok=True)
        nothing.touch()
    return None


def graph_types(model: onnx.ModelProto) -> set[str]:
    """The element types (fp32, fp16, bf16) of the graph's float inputs and outputs."""
    found = (float_type(value.type.tensor_type.elem_type) for value in (*model.graph.input, *model.graph.output))
    return {t.name for t in found if t is not None}


def _write(model: onnx.ModelProto, screened: screened_head.ScreenedHead | None, out_dir: Path, what: str) -> Derived:
    tmp = out_dir.with_name(f"{out_dir.name}.tmp{os.getpid()}")  # replicas starting together each write their own
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _save(model, tmp / "model.onnx")
    if screened is not None:
        _save(screened.full, tmp / "head.onnx")
        np.save(tmp / "head_weight.npy", screened.weight)
    try:
        tmp.rename(out_dir)
    except OSError:  # another process finished the same derivation first: use its copy
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("derived %s from %s", out_dir, what)
    return Derived.found_in(out_dir)


@dataclass(slots=True, frozen=True)
class CpuGraphs:
    one_row: Path  # the model as shipped, or its screened copy
    dense: Path | None  # the dense twin (screened when one_row is)
    head: Path | None  # the full fp32 head (hidden → logits), when the graphs are screened

    @property
    def head_weight(self) -> Path | None:
        """float32 [V, K] .npy of the head's values (memory-mapped to recompute candidate logits)."""
        return None if self.head is None else self.head.with_name("head_weight.npy")


def cpu_graphs(model_file: Path, logits_name: str, cache_dir: Path, *, dense: bool, screen_head: bool) -> CpuGraphs:
    """The graphs a CPU runner loads, derived (and cached) as asked."""
    screened = (
        derive(model_file, cache_dir, dense=False, screen_head=True, logits_name=logits_name) if screen_head else None
    )
    head = screened if screened is not None and screened.head is not None else None
    twin = (
        derive(model_file, cache_dir, dense=True, screen_head=head is not None, logits_name=logits_name)
        if dense
        else None
    )
    twin_model = twin.model if twin is not None else None
    if head is None:
        return CpuGraphs(model_file, twin_model, None)
    return CpuGraphs(head.model, twin_model, head.head)
