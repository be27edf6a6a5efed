"""GGUF tokenizer metadata → Hugging Face `tokenizer.json` + `tokenizer_config.json`.

Only GPT-2 style byte-level BPE (`tokenizer.ggml.model == "gpt2"`) is supported; the pre-tokenizer is chosen
from `tokenizer.ggml.pre` to reproduce llama.cpp's (and the original HF tokenizer's) splitting.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gguf
from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers, processors
from tokenizers.models import BPE

# llama.cpp token_type values (llama_token_type in llama.h / gguf.TokenType)
_TOKEN_TYPE_CONTROL = 3
_TOKEN_TYPE_USER_DEFINED = 4


def _gpt2_pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    # llama.cpp "gpt2": 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
    return pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)


def _digits_then_gpt2_pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    # llama.cpp "smollm"/"starcoder"/"refact": \p{N} first (every digit alone), then the GPT-2 regex;
    # identical to SmolLM2's HF tokenizer.json (Digits(individual_digits) + ByteLevel).
    return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), _gpt2_pre_tokenizer()])


_PRE_TOKENIZERS: dict[str, Callable[[], pre_tokenizers.PreTokenizer]] = {
    "default": _gpt2_pre_tokenizer,
    "gpt2": _gpt2_pre_tokenizer,
    "smollm": _digits_then_gpt2_pre_tokenizer,
    "starcoder": _digits_then_gpt2_pre_tokenizer,
    "refact": _digits_then_gpt2_pre_tokenizer,
}


class UnsupportedTokenizerError(ValueError):
    """The GGUF's tokenizer model or pre-tokenizer has no converter here."""


def _field(reader: gguf.GGUFReader, key: str, default: Any = None) -> Any:
    field = reader.fields.get(key)
    return default if field is None else field.contents()


def _required(reader: gguf.GGUFReader, key: str) -> Any:
    value = _field(reader, key)
    if value is None:
        raise ValueError(f"GGUF has no {key!r} metadata")
    return value


def build_tokenizer(reader: gguf.GGUFReader) -> Tokenizer:
    """A `tokenizers.Tokenizer` equivalent to the GGUF's (byte-level BPE only)."""
    model = _required(reader, "tokenizer.ggml.model")
    if model != "gpt2":
        raise UnsupportedTokenizerError(f"tokenizer model {model!r} is not supported (only 'gpt2' byte-level BPE)")
    pre = _field(reader, "tokenizer.ggml.pre", "default")
    if pre not in _PRE_TOKENIZERS:
        raise UnsupportedTokenizerError(
            f"pre-tokenizer {pre!r} is not supported (known: {', '.join(sorted(_PRE_TOKENIZERS))})"
        )
    tokens: list[str] = _required(reader, "tokenizer.ggml.tokens")
    types: list[int] = _field(reader, "tokenizer.ggml.token_type", [1] * len(tokens))
    # Byte-level tokens never contain a real space (it is "Ġ"), so "a b" splits unambiguously.
    merges = [tuple(m.split(" ", 1)) for m in _required(reader, "tokenizer.ggml.merges")]

    tok = Tokenizer(BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, fuse_unk=False))
    tok.pre_tokenizer = _PRE_TOKENIZERS[pre]()
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    # Registered as added tokens so that text like "<|im_start|>" encodes as one id; control tokens are
    # special (skipped by decode(skip_special_tokens=True)), user-defined ones are ordinary text.
    added = [
        AddedToken(t, special=(ty == _TOKEN_TYPE_CONTROL), normalized=False)
        for t, ty in zip(tokens, types, strict=True)
        if ty in (_TOKEN_TYPE_CONTROL, _TOKEN_TYPE_USER_DEFINED)
    ]
    tok.add_tokens(added)
    return tok


def _token(tokens: list[str], index: int | None) -> str | None:
    return tokens[index] if index is not None and 0 <= index < len(tokens) else None


def tokenizer_special_ids(reader: gguf.GGUFReader) -> dict[str, int]:
    """`bos_token_id`, `eos_token_id`, `pad_token_id` for genai_config.json (pad falls back to eos)."""
    eos = int(_required(reader, "tokenizer.ggml.eos_token_id"))
    bos = _field(reader, "tokenizer.ggml.bos_token_id")
    pad = _field(reader, "tokenizer.ggml.padding_token_id")
    return {
        "bos_token_id": int(bos) if bos is not None else eos,
        "eos_token_id": eos,
        "pad_token_id": int(pad) if pad is not None else eos,
    }


def build_tokenizer_config(reader: gguf.GGUFReader, tokenizer: Tokenizer) -> dict[str, Any]:
    """HF-style tokenizer_config.json contents."""
    tokens: list[str] = _required(reader, "tokenizer.ggml.tokens")
    arch = _field(reader, "general.architecture", "llama")
    config: dict[str, Any] = {
        "tokenizer_class": "GPT2Tokenizer",
        "add_bos_token": bool(_field(reader, "tokenizer.ggml.add_bos_token", False)),
        "add_eos_token": bool(_field(reader, "tokenizer.ggml.add_eos_token", False)),
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
        "bos_token": _token(tokens, _field(reader, "tokenizer.ggml.bos_token_id")),
        "eos_token": _token(tokens, _field(reader, "tokenizer.ggml.eos_token_id")),
        "unk_token": _token(tokens, _field(reader, "tokenizer.ggml.unknown_token_id")),
        "pad_token": _token(tokens, _field(reader, "tokenizer.ggml.padding_token_id")),
        "model_max_length": int(_field(reader, f"{arch}.context_length", 2048)),
        "added_tokens_decoder": {
            str(i): {
                "content": t.content,
                "lstrip": t.lstrip,
                "normalized": t.normalized,
                "rstrip": t.rstrip,
                "single_word": t.single_word,
                "special": t.special,
            }
            for i, t in sorted(tokenizer.get_added_tokens_decoder().items())
        },
    }
    template = _field(reader, "tokenizer.chat_template")
    if template is not None:
        config["chat_template"] = template
    return config


def write_tokenizer_files(reader: gguf.GGUFReader, out_dir: Path) -> None:
    """Write `tokenizer.json` and `tokenizer_config.json` for the GGUF's tokenizer into `out_dir`."""
    tokenizer = build_tokenizer(reader)
    config = build_tokenizer_config(reader, tokenizer)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(out_dir / "tokenizer.json"))
    (out_dir / "tokenizer_config.json").write_text(
        json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
