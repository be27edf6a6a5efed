"""Convert a GGUF decoder (llama, qwen2, qwen3, gemma3) into a model folder in ONNX Runtime GenAI's layout.

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

from inference_service.models.decoder_graph import DecoderShape, DecoderWeights, LayerWeights, build_decoder
from inference_service.models.gguf_tokenizer import tokenizer_special_ids, write_tokenizer_files
from inference_service.models.gguf_weights import Weight, stack, transcode, transcode_table
from inference_service.models.precision import FP32, PRECISIONS
from inference_service.models.pull import sha256_of

logger = logging.getLogger(__name__)

CONVERTER_VERSION = 4  # 4: K-quants and qwen2/qwen3/gemma3
STAMP = "ortserve_convert.json"
# Recommended sampling (applies when a request leaves a parameter unset): SmolLM2-Instruct's, and Gemma 3's
# generation_config.json for gemma3.
DEFAULT_SEARCH = {"do_sample": True, "temperature": 0.2, "top_p": 0.9, "top_k": 50}
SEARCH_BY_ARCH = {"gemma3": {"do_sample": True, "temperature": 1.0, "top_p": 0.95, "top_k": 64}}


class UnsupportedModelError(ValueError):
    pass


def _field(reader: gguf.GGUFReader, key: str, default: Any = None) -> Any:
    field = reader.fields.get(key)
    if field is None:
        if default is None:
            raise UnsupportedModelError(f"GGUF is missing metadata {key!r}")
        return default
    return field.contents()


ARCHITECTURES = ("llama", "qwen2", "qwen3", "gemma3")
# gemma3 in llama.cpp (llama-model.cpp): every 6th layer is global, the others use the sliding window and rope base
# 10000; the 27B model (62 layers) scales attention by 1/sqrt(hidden/heads), the others by 1/sqrt(head_dim).
GEMMA3_SWA_PATTERN = 6
GEMMA3_ROPE_BASE_LOCAL = 10000.0


def read_shape(reader: gguf.GGUFReader) -> DecoderShape:
    arch = _field(reader, "general.architecture")
    if arch not in ARCHITECTURES:
        raise UnsupportedModelError(f"architecture {arch!r} is not supported (supported: {', '.join(ARCHITECTURES)})")

    def key(name: str, default: Any = None) -> Any:
        return _field(reader, f"{arch}.{name}", default)

    heads = int(key("attention.head_count"))
    hidden = int(key("embedding_length"))
    layers = int(key("block_count"))
    head_dim = int(key("attention.key_length", key("rope.dimension_count", hidden // heads)))
    if int(key("attention.value_length", head_dim)) != head_dim:
        raise UnsupportedModelError("key and value head sizes differ")
    if int(key("rope.dimension_count", head_dim)) != head_dim:
        raise UnsupportedModelError("partial rotary (rope.dimension_count < head size) is not supported")
    rope_scale = 1.0
    scaling = key("rope.scaling.type", "none")
    if scaling == "linear":
        rope_scale = float(key("rope.scaling.factor", 1.0))
    elif scaling != "none":
        raise UnsupportedModelError(f"rope scaling {scaling!r} is not supported (only linear)")
    common: dict[str, Any] = {
        "arch": arch,
        "layers": layers,
        "hidden": hidden,
        "ffn": int(key("feed_forward_length")),
        "heads": heads,
        "kv_heads": int(key("attention.head_count_kv", heads)),
        "head_dim": head_dim,
        "vocab": len(reader.fields["tokenizer.ggml.tokens"].data),
        "context_length": int(key("context_length")),
        "rope_base": float(key("rope.freq_base", 10000.0)),
        "rms_eps": float(key("attention.layer_norm_rms_epsilon")),
        "rope_scale": rope_scale,
        "final_softcap": float(key("final_logit_softcapping", 0.0)),
    }
    if arch == "llama":
        return DecoderShape(**common)
    if arch in ("qwen2", "qwen3"):
        return DecoderShape(**common, rope_interleaved=False, qk_norm=arch == "qwen3")
    window = int(key("attention.sliding_window", 0))
    return DecoderShape(
        **common,
        rope_interleaved=False,
        activation="gelu_tanh",
        qk_norm=True,
        post_norms=True,
        embed_scale=float(np.sqrt(np.float32(hidden))),
        attention_scale=float(1 / np.sqrt(hidden / heads if layers == 62 else head_dim)),
        sliding_window=window,
        local_layers=tuple(i for i in range(layers) if window and i % GEMMA3_SWA_PATTERN < GEMMA3_SWA_PATTERN - 1),
        rope_base_local=GEMMA3_ROPE_BASE_LOCAL,
    )


def read_weights(reader: gguf.GGUFReader, shape: DecoderShape, progress: bool) -> DecoderWeights:
    tensors = {t.name: t for t in reader.tensors}

    def tensor(name: str) -> Any:
        t = tensors.get(name)
        if t is None:
            raise UnsupportedModelError(f"GGUF is missing tensor {name!r}")
        return t

    def weight(name: str) -> Weight:
        t = tensor(name)
        k, n = (int(d) for d in t.shape)  # GGUF lists dims innermost first
        return transcode(t.data, t.tensor_type, n, k)

    def vector(name: str) -> np.ndarray:
        return np.asarray(tensor(name).data, dtype=np.float32).reshape(-1)

    def optional(name: str) -> np.ndarray | None:
        return vector(name) if name in tensors else None

    layers = []
    for i in tqdm(range(shape.layers), desc="transcode layers", disable=not progress):
        p = f"blk.{i}"
        biases = [b for b in (optional(f"{p}.attn_{x}.bias") for x in "qkv") if b is not None]
        if len(biases) not in (0, 3):
            raise UnsupportedModelError(f"{p}: q, k and v biases must come together")
        layers.append(
            LayerWeights(
                attn_norm=vector(f"{p}.attn_norm.weight"),
                qkv=stack([weight(f"{p}.attn_q.weight"), weight(f"{p}.attn_k.weight"), weight(f"{p}.attn_v.weight")]),
                o=weight(f"{p}.attn_output.weight"),
                ffn_norm=vector(f"{p}.ffn_norm.weight"),
                gate_up=stack([weight(f"{p}.ffn_gate.weight"), weight(f"{p}.ffn_up.weight")]),
                down=weight(f"{p}.ffn_down.weight"),
                qkv_bias=np.concatenate(biases) if biases else None,
                q_norm=vector(f"{p}.attn_q_norm.weight") if shape.qk_norm else None,
                k_norm=vector(f"{p}.attn_k_norm.weight") if shape.qk_norm else None,
                post_attn_norm=vector(f"{p}.post_attention_norm.weight") if shape.post_norms else None,
                post_ffn_norm=vector(f"{p}.post_ffw_norm.weight") if shape.post_norms else None,
            )
        )
    t = tensor("token_embd.weight")
    k, n = (int(d) for d in t.shape)
    embedding = transcode_table(t.data, t.tensor_type, n, k)
    lm_head = weight("output.weight") if "output.weight" in tensors else None
    return DecoderWeights(embedding, layers, vector("output_norm.weight"), lm_head, optional("rope_freqs.weight"))


# Architectures whose activations leave fp16's range: Gemma 3 270M's residual stream reaches 1.0e5 (the float64
# reference on "The capital of France is"; fp16's largest value is 65,504), and its fp16 graph gives NaN logits.
FP16_OVERFLOWS = ("gemma3",)


def cuda_precision(architecture: str) -> str:
    """The CUDA graph's precision for an architecture: fp16, or bf16 where its activations overflow fp16."""
    return "bf16" if architecture in FP16_OVERFLOWS else "fp16"


def gguf_architecture(gguf_path: Path) -> str:
    """A GGUF's general.architecture (parses the whole header: ~12 s for Gemma 3's 262,144-token vocabulary)."""
    return str(_field(gguf.GGUFReader(gguf_path), "general.architecture"))


def target_provider(precision: str) -> str:
    """The execution provider a precision is built for: fp32 for the CPU EP, fp16/bf16 for the CUDA EP."""
    return "cpu" if precision == FP32.name else "cuda"


def genai_config(shape: DecoderShape, special: dict[str, Any], precision: str = FP32.name) -> dict[str, Any]:
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
            "type": shape.arch,
            "vocab_size": shape.vocab,
        },
        "search": {
            "max_length": shape.context_length,
            "past_present_share_buffer": True,
            **SEARCH_BY_ARCH.get(shape.arch, DEFAULT_SEARCH),
        },
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
    if precision == "fp16" and shape.arch in FP16_OVERFLOWS:
        raise UnsupportedModelError(f"{shape.arch}'s activations overflow fp16 (NaN logits): use --precision bf16")
    logger.info("converting %s to %s: %s", gguf_path.name, precision, shape)
    weights = read_weights(reader, shape, progress)
    model = build_decoder(shape, weights, accuracy_level, PRECISIONS[precision])

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
