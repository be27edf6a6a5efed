"""Load a model folder in ONNX Runtime GenAI's layout (genai_config.json + model.onnx + tokenizer files)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ModelFolderError(ValueError):
    pass


@dataclass(slots=True, frozen=True)
class SearchDefaults:
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    do_sample: bool = True


@dataclass(slots=True, frozen=True)
class ModelConfig:
    path: Path
    model_file: Path
    model_type: str
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_size: int
    hidden_size: int
    vocab_size: int
    context_length: int
    bos_token_id: int | None
    eos_token_ids: tuple[int, ...]
    pad_token_id: int | None
    input_ids_name: str
    attention_mask_name: str
    past_key_names: str  # printf patterns with %d for the layer
    past_value_names: str
    logits_name: str
    present_key_names: str
    present_value_names: str
    search: SearchDefaults


def _ids(value: Any) -> tuple[int, ...]:
    if value is None:
        return ()
    return tuple(int(v) for v in (value if isinstance(value, list) else [value]))


def load_model_config(folder: Path) -> ModelConfig:
    config_path = folder / "genai_config.json"
    if not config_path.is_file():
        raise ModelFolderError(f"{folder} is not a model folder: genai_config.json is missing")
    try:
        raw = json.loads(config_path.read_text())
        model = raw["model"]
        decoder = model["decoder"]
        inputs, outputs = decoder["inputs"], decoder["outputs"]
        search = raw.get("search", {})
        do_sample = bool(search.get("do_sample", False))
        # GenAI's search defaults apply to sampling; do_sample false there means greedy.
        defaults = SearchDefaults(
            temperature=float(search.get("temperature", 1.0)) if do_sample else 0.0,
            top_p=float(search.get("top_p", 1.0)),
            top_k=int(search.get("top_k", 0)),
            do_sample=do_sample,
        )
        model_file = folder / decoder["filename"]
        config = ModelConfig(
            path=folder,
            model_file=model_file,
            model_type=str(model.get("type", "")),
            num_layers=int(decoder["num_hidden_layers"]),
            num_heads=int(decoder["num_attention_heads"]),
            num_kv_heads=int(decoder["num_key_value_heads"]),
            head_size=int(decoder["head_size"]),
            hidden_size=int(decoder["hidden_size"]),
            vocab_size=int(model["vocab_size"]),
            context_length=int(model["context_length"]),
            bos_token_id=model.get("bos_token_id"),
            eos_token_ids=_ids(model.get("eos_token_id")),
            pad_token_id=model.get("pad_token_id"),
            input_ids_name=inputs["input_ids"],
            attention_mask_name=inputs["attention_mask"],
            past_key_names=inputs["past_key_names"],
            past_value_names=inputs["past_value_names"],
            logits_name=outputs["logits"],
            present_key_names=outputs["present_key_names"],
            present_value_names=outputs["present_value_names"],
            search=defaults,
        )
    except (KeyError, TypeError, ValueError, json.JSONDecodeError) as e:
        raise ModelFolderError(f"{config_path}: invalid or unsupported genai_config ({e!r})") from e
    if not model_file.is_file():
        raise ModelFolderError(f"{model_file} is missing")
    if not search.get("past_present_share_buffer", True):
        raise ModelFolderError("models without a shared past/present KV buffer (GroupQueryAttention) are not supported")
    return config
