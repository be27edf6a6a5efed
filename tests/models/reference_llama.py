"""The llama float64 reference: ``reference_decoder.ReferenceDecoder`` restricted to llama GGUFs, under the names
the converter tests import (see that module for the math and its sources in llama.cpp)."""

from __future__ import annotations

from pathlib import Path

from tests.models.reference_decoder import DecoderHParams as LlamaHParams
from tests.models.reference_decoder import DecoderLayer as LayerWeights
from tests.models.reference_decoder import ReferenceDecoder

__all__ = ["LayerWeights", "LlamaHParams", "ReferenceLlama"]


class ReferenceLlama(ReferenceDecoder):
    @classmethod
    def from_gguf(cls, path: str | Path) -> ReferenceLlama:
        model = super().from_gguf(path)
        if model.hp.arch != "llama":
            raise ValueError(f"not a llama GGUF: {model.hp.arch}")
        assert isinstance(model, ReferenceLlama)
        return model
