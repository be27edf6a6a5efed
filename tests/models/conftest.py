"""Fixtures of the converter tests: the independent float64 reference and the model's tokenizer (per module: the
reference holds the dequantized weights in float64, ~1 GB)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tokenizers import Tokenizer

from tests.models.reference_llama import ReferenceLlama


@pytest.fixture(scope="module")
def reference(gguf_path: Path) -> ReferenceLlama:
    return ReferenceLlama.from_gguf(gguf_path)


@pytest.fixture(scope="module")
def tokenizer(model_dir: Path) -> Tokenizer:
    return Tokenizer.from_file(str(model_dir / "tokenizer.json"))
