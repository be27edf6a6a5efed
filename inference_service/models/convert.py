"""Convert a llama-architecture GGUF into a model folder in ONNX Runtime GenAI's layout.

Writes genai_config.json, model.onnx + model.onnx.data, tokenizer.json and tokenizer_config.json. Weights keep
their GGUF values exactly (see gguf_weights.py). Idempotent: a stamp records the source's sha256 and the
converter version, and a matching folder is reused.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import onnx
from tqdm import tqdm

from inference_service.models.gguf_tokenizer import tokenizer_special_ids, write_tokenizer_files
from inference_service.models.gguf_weights import BlockQuantized, Dense, Weight, dequantize, transcode
from inference_service.models.llama_graph import LayerWeights, LlamaShape, LlamaWeights, build_llama
from inference_service.models.precision import FP32, PRECISIONS
from inference_service.models.pull import sha256_of

logger = logging.getLogger(__name__)

CONVERTER_VERSION = 3  # 3: packed q, k, v into GroupQueryAttention (no Split)
STAMP = "ortserve_convert.json"
# SmolLM2-Instruct's recommended sampling; applies when a request leaves a parameter unset.
DEFAULT_SEARCH = {"do_sample": True, "temperature": 0.2, "top_p": 0.9, "top_k": 50}


class UnsupportedModelError(ValueError):
    pass


def _field(reader: gguf.GGUFReader, key: str, default: Any = None) -> Any:
    field = reader.fields.get(key)
    if field is None:
        if default is None:
            raise UnsupportedModelError(f"GGUF is missing metadata {key!r}")
        return default
    return field.contents()


def read_shape(reader: gguf.GGUFReader) -> LlamaShape:
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise UnsupportedModelError(f"architecture {arch!r} is not supported (only 'llama')")
    heads = int(_field(reader, "llama.attention.head_count"))
    hidden = int(_field(reader, "llama.embedding_length"))
    return LlamaShape(
        layers=int(_field(reader, "llama.block_count")),
        hidden=hidden,
        ffn=int(_field(reader, "llama.feed_forward_length")),
        heads=heads,
        kv_heads=int(_field(reader, "llama.attention.head_count_kv", heads)),
        head_dim=int(_field(reader, "llama.rope.dimension_count", hidden // heads)),
        vocab=len(reader.fields["tokenizer.ggml.tokens"].data),
        context_length=int(_field(reader, "llama.context_length")),
        rope_base=float(_field(reader, "llama.rope.freq_base", 10000.0)),
        rms_eps=float(_field(reader, "llama.attention.layer_norm_rms_epsilon")),
    )


def _stack(parts: list[Weight]) -> Weight:
    """Concatenate weights along N (fused projections); dense when their forms differ."""
    first = parts[0]
    if isinstance(first, BlockQuantized) and all(
        isinstance(p, BlockQuantized) and p.bits == first.bits and (p.offset is None) == (first.offset is None)
        for p in parts
    ):
        blocks = [p for p in parts if isinstance(p, BlockQuantized)]
        offsets = [p.offset for p in blocks if p.offset is not None]
        return BlockQuantized(
            first.bits,
            sum(p.n for p in blocks),
            first.k,
            np.concatenate([p.packed for p in blocks]),
            np.concatenate([p.scales for p in blocks]),
            np.concatenate(offsets) if offsets else None,
        )
    return Dense(np.concatenate([dequantize(p) for p in parts]))


def read_weights(reader: gguf.GGUFReader, shape: LlamaShape, progress: bool) -> LlamaWeights:
    tensors = {t.name: t for t in reader.tensors}

    def weight(name: str) -> Weight:
        t = tensors.get(name)
        if t is None:
            raise UnsupportedModelError(f"GGUF is missing tensor {name!r}")
        k, n = (int(d) for d in t.shape)  # GGUF lists dims innermost first
        return transcode(t.data, t.tensor_type, n, k)

    def vector(name: str) -> np.ndarray:
        return np.asarray(tensors[name].data, dtype=np.float32).reshape(-1)

    layers = []
    for i in tqdm(range(shape.layers), desc="transcode layers", disable=not progress):
        p = f"blk.{i}"
        layers.append(
            LayerWeights(
                attn_norm=vector(f"{p}.attn_norm.weight"),
                qkv=_stack([weight(f"{p}.attn_q.weight"), weight(f"{p}.attn_k.weight"), weight(f"{p}.attn_v.weight")]),
                o=weight(f"{p}.attn_output.weight"),
                ffn_norm=vector(f"{p}.ffn_norm.weight"),
                gate_up=_stack([weight(f"{p}.ffn_gate.weight"), weight(f"{p}.ffn_up.weight")]),
                down=weight(f"{p}.ffn_down.weight"),
            )
        )
    embedding = weight("token_embd.weight")
    if isinstance(embedding, BlockQuantized) and (embedding.bits != 8 or embedding.offset is not None):
        embedding = Dense(dequantize(embedding))  # the quantized gather takes symmetric 8-bit only
    lm_head = weight("output.weight") if "output.weight" in tensors else None
    return LlamaWeights(embedding, layers, vector("output_norm.weight"), lm_head)


def target_provider(precision: str) -> str:
    """The execution provider a precision is built for: fp32 for the CPU EP, fp16/bf16 for the CUDA EP."""
    return "cpu" if precision == FP32.name else "cuda"


def genai_config(shape: LlamaShape, special: dict[str, Any], precision: str = FP32.name) -> dict[str, Any]:
    target = target_provider(precision)
    return {
        "model": {
            "bos_token_id": special["bos_token_id"],
            "context_length": shape.context_length,
            "decoder": {
                "session_options": {
                    "log_id": "ortserve",
                    "provider_options": [] if target == "cpu" else [{target: {}}],  # as GenAI's builder writes
                },
                "filename": "model.onnx",
                "head_size": shape.head_dim,
                "hidden_size": shape.hidden,
                "inputs": {
                    "input_ids": "input_ids",
                    "attention_mask": "attention_mask",
                    "past_key_names": "past_key_values.%d.key",
                    "past_value_names": "past_key_values.%d.value",
                },
                "outputs": {
                    "logits": "logits",
                    "present_key_names": "present.%d.key",
                    "present_value_names": "present.%d.value",
                },
                "num_attention_heads": shape.heads,
                "num_hidden_layers": shape.layers,
                "num_key_value_heads": shape.kv_heads,
            },
            "eos_token_id": special["eos_token_id"],
            "pad_token_id": special["pad_token_id"],
            "type": "llama",
            "vocab_size": shape.vocab,
        },
        "search": {"max_length": shape.context_length, "past_present_share_buffer": True, **DEFAULT_SEARCH},
    }


def convert(
    gguf_path: Path, out_dir: Path, progress: bool = True, accuracy_level: int = 0, precision: str = FP32.name
) -> Path:
    """Convert `gguf_path` into `out_dir` (reused when already converted from the same file and options).

    precision: fp32 (the CPU graph: GGUF weights exact, fp32 compute) or fp16/bf16 (the CUDA graph).
    """
    if precision not in PRECISIONS:
        raise UnsupportedModelError(f"precision {precision!r} is not one of {sorted(PRECISIONS)}")
    digest = sha256_of(gguf_path, progress)
    stamp = {
        "source": gguf_path.name,
        "sha256": digest,
        "converter_version": CONVERTER_VERSION,
        "accuracy_level": accuracy_level,
        "precision": precision,
        "execution_provider": target_provider(precision),
    }
    stamp_path = out_dir / STAMP
    if stamp_path.exists() and json.loads(stamp_path.read_text()) == stamp:
        logger.info("model folder %s is up to date", out_dir)
        return out_dir

    reader = gguf.GGUFReader(gguf_path)
    shape = read_shape(reader)
    logger.info("converting %s to %s: %s", gguf_path.name, precision, shape)
    weights = read_weights(reader, shape, progress)
    model = build_llama(shape, weights, accuracy_level, PRECISIONS[precision])

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=f".{out_dir.name}.") as tmp:
        work = Path(tmp)
        with tqdm(total=1, desc="write model.onnx", disable=not progress) as bar:
            onnx.save_model(
                model,
                work / "model.onnx",
                save_as_external_data=True,
                all_tensors_to_one_file=True,
                location="model.onnx.data",
                size_threshold=1024,
            )
            bar.update()
        write_tokenizer_files(reader, work)
        config = genai_config(shape, tokenizer_special_ids(reader), precision)
        (work / "genai_config.json").write_text(json.dumps(config, indent=2) + "\n")
        (work / STAMP).write_text(json.dumps(stamp, indent=2) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        work.chmod(0o755)  # mkdtemp makes it private; the folder is shared read-only (e.g. a compose volume)
        work.rename(out_dir)
        work.mkdir()  # let TemporaryDirectory clean up an empty folder
    logger.info("wrote %s", out_dir)
    return out_dir
