"""Element types of model tensors: the compute precisions a graph can be built in, and the types a session reports.

A model's precision is a property of its graph. Code that allocates or binds model tensors reads the type from the
session (`element_type(arg.type)`) and passes its ONNX type number to onnxruntime, which takes bfloat16 only that
way (numpy has no bfloat16; host buffers of it are kept as uint16 of the same bits).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import ml_dtypes
import numpy as np
from onnx import TensorProto


@dataclass(slots=True, frozen=True)
class ElementType:
    name: str  # fp32 | fp16 | bf16: the names `convert --precision` takes
    onnx_type: int  # TensorProto.FLOAT, FLOAT16, BFLOAT16: what onnxruntime's bind/alloc calls take
    numpy: Any  # the numpy (or ml_dtypes) type of the values, for building initializers
    storage: Any  # the numpy type of host buffers with the same bits (bf16 as uint16)

    @property
    def itemsize(self) -> int:
        return int(np.dtype(self.storage).itemsize)


FP32 = ElementType("fp32", TensorProto.FLOAT, np.float32, np.float32)
FP16 = ElementType("fp16", TensorProto.FLOAT16, np.float16, np.float16)
BF16 = ElementType("bf16", TensorProto.BFLOAT16, ml_dtypes.bfloat16, np.uint16)
PRECISIONS = {t.name: t for t in (FP32, FP16, BF16)}
_BY_ORT_TYPE = {"tensor(float)": FP32, "tensor(float16)": FP16, "tensor(bfloat16)": BF16}


class UnsupportedElementTypeError(ValueError):
    pass


def float_type(onnx_type: int) -> ElementType | None:
    """The element type of an ONNX TensorProto type number, None when it is no float type of ours."""
    return next((t for t in PRECISIONS.values() if t.onnx_type == onnx_type), None)


def element_type(ort_type: str) -> ElementType:
    """The element type of a session input/output from its type string (e.g. 'tensor(float16)')."""
    found = _BY_ORT_TYPE.get(ort_type)
    if found is None:
        raise UnsupportedElementTypeError(f"{ort_type} is not a supported model tensor type ({sorted(_BY_ORT_TYPE)})")
    return found
