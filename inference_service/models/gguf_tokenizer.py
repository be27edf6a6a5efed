"""GGUF tokenizer metadata → Hugging Face `tokenizer.json` + `tokenizer_config.json`.

Two of llama.cpp's tokenizer models are supported, each reproducing llama.cpp's (llama-vocab.cpp) tokenization:
- `gpt2`: byte-level BPE; the pre-tokenizer (llama.cpp's regex split) is chosen from `tokenizer.ggml.pre`:
  GPT-2's regex, SmolLM/StarCoder's (digits first), Llama 3's and Qwen2's (`_BPE_PRES`).
- `llama`: SentencePiece BPE ("SPM": Llama 2, Mistral, Gemma): tokens + scores, "▁" for spaces, `<0xAB>` byte
  fallback. llama.cpp's `llm_tokenizer_spm` merges the adjacent pair whose concatenation is the vocabulary piece
  with the highest score (ties: leftmost); as a BPE model that is one merge per two-piece split of every piece,
  ranked by the piece's score (what transformers' GGUF converter and SentencePieceBPETokenizer build).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import BPE

# llama.cpp token_type values (llama_token_type in llama.h / gguf.TokenType)
_TOKEN_TYPE_NORMAL = 1
_TOKEN_TYPE_UNKNOWN = 2
_TOKEN_TYPE_CONTROL = 3
_TOKEN_TYPE_USER_DEFINED = 4

_SPACE_MARK = "\u2581"  # "▁": SentencePiece's escaped space


def _gpt2_pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    # llama.cpp "gpt2": 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
    return pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)


def _digits_then_gpt2_pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    # llama.cpp "smollm"/"starcoder"/"refact": \p{N} first (every digit alone), then the GPT-2 regex;
    # identical to SmolLM2's HF tokenizer.json (Digits(individual_digits) + ByteLevel).
    return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), _gpt2_pre_tokenizer()])


# llama.cpp's regexes for LLAMA_VOCAB_PRE_TYPE_LLAMA3 and _QWEN2 (llm_tokenizer_bpe in src/llama-vocab.cpp): the
# models' tokenizer.json regexes with (?i:'s|'t|...) spelled as explicit [sS] classes. They differ only in numbers:
# Llama 3 splits digit runs into groups of up to three, Qwen2 into single digits.
_LLAMA3_REGEX = (
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_REGEX = (
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def _split_then_bytes(regex: str) -> Callable[[], pre_tokenizers.PreTokenizer]:
    # As in Llama 3's and Qwen2's HF tokenizer.json: every match is a piece, then bytes → GPT-2 characters.
    def build() -> pre_tokenizers.PreTokenizer:
        split = pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False)
        return pre_tokenizers.Sequence([split, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])

    return build


@dataclass(frozen=True, slots=True)
class _BpePre:
    """What llama.cpp's vocabulary loader sets for a family of `tokenizer.ggml.pre` names (llama-vocab.cpp)."""

    pre_tokenizer: Callable[[], pre_tokenizers.PreTokenizer]
    ignore_merges: bool = False  # a pre-token that is itself a vocabulary piece is that piece, merges or not
    add_bos: bool = False  # add_bos when the GGUF has no tokenizer.ggml.add_bos_token


_GPT2 = _BpePre(_gpt2_pre_tokenizer)
_DIGITS_THEN_GPT2 = _BpePre(_digits_then_gpt2_pre_tokenizer)
_LLAMA3 = _BpePre(_split_then_bytes(_LLAMA3_REGEX), ignore_merges=True, add_bos=True)
_QWEN2 = _BpePre(_split_then_bytes(_QWEN2_REGEX))

_BPE_PRES: dict[str, _BpePre] = {
    "default": _GPT2,
    "gpt2": _GPT2,
    "smollm": _DIGITS_THEN_GPT2,
    "starcoder": _DIGITS_THEN_GPT2,
    "refact": _DIGITS_THEN_GPT2,
    # the names llama.cpp maps to LLAMA_VOCAB_PRE_TYPE_LLAMA3 ("llama-bpe": Llama 3, 3.1, 3.2)
    **dict.fromkeys(
        ("llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "jina-v5-nano"),
        _LLAMA3,
    ),
    # LLAMA_VOCAB_PRE_TYPE_QWEN2 ("qwen2": Qwen2, 2.5, 3) and STABLELM2, which shares its regex
    **dict.fromkeys(("qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez", "stablelm2"), _QWEN2),
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
    """A `tokenizers.Tokenizer` equivalent to the GGUF's (llama.cpp `gpt2` or `llama` tokenizer model)."""
    model = _required(reader, "tokenizer.ggml.model")
    if model == "gpt2":
        return _gpt2_tokenizer(reader)
    if model == "llama":
        return _spm_tokenizer(reader)
    raise UnsupportedTokenizerError(
        f"tokenizer model {model!r} is not supported (known: 'gpt2' byte-level BPE, 'llama' SentencePiece)"
    )


def _gpt2_tokenizer(reader: gguf.GGUFReader) -> Tokenizer:
    name = _field(reader, "tokenizer.ggml.pre", "default")
    pre = _BPE_PRES.get(name)
    if pre is None:
        raise UnsupportedTokenizerError(
            f"pre-tokenizer {name!r} is not supported (known: {', '.join(sorted(_BPE_PRES))})"
        )
    tokens: list[str] = _required(reader, "tokenizer.ggml.tokens")
    types: list[int] = _field(reader, "tokenizer.ggml.token_type", [_TOKEN_TYPE_NORMAL] * len(tokens))
    # Byte-level tokens never contain a real space (it is "Ġ"), so "a b" splits unambiguously.
    merges = [tuple(m.split(" ", 1)) for m in _required(reader, "tokenizer.ggml.merges")]

    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(BPE(vocab=vocab, merges=merges, fuse_unk=False, ignore_merges=pre.ignore_merges))
    tok.pre_tokenizer = pre.pre_tokenizer()
    tok.decoder = decoders.ByteLevel()
    byte_level = processors.ByteLevel(trim_offsets=False)
    template = _special_template(reader, tokens)
    # BOS/EOS only where the GGUF asks (Llama 3), as in Llama 3's tokenizer.json: ByteLevel, then the template
    tok.post_processor = byte_level if template is None else processors.Sequence([byte_level, template])
    tok.add_tokens(_added_tokens(tokens, types))
    return tok


def _spm_tokenizer(reader: gguf.GGUFReader) -> Tokenizer:
    tokens: list[str] = _required(reader, "tokenizer.ggml.tokens")
    types: list[int] = _field(reader, "tokenizer.ggml.token_type", [_TOKEN_TYPE_NORMAL] * len(tokens))
    scores: list[float] = _field(reader, "tokenizer.ggml.scores", [0.0] * len(tokens))
    vocab = {t: i for i, t in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise ValueError("GGUF vocabulary has duplicate tokens")  # llama.cpp refuses these too
    add_space_prefix = spm_add_space_prefix(reader)
    # A character with no piece falls back to its UTF-8 bytes as <0xAB> pieces (resegment in llama.cpp).
    tok = Tokenizer(
        BPE(
            vocab=vocab,
            merges=_spm_merges(tokens, scores, vocab),
            unk_token=_token(tokens, _field(reader, "tokenizer.ggml.unknown_token_id")),
            fuse_unk=True,
            byte_fallback=True,
        )
    )
    # No pre-tokenizer: SPM merges across spaces. Added tokens are split off before normalizing, so the "▁"
    # prefix goes on every text run after one, as llama.cpp's is_prev_special does.
    escape = normalizers.Replace(" ", _SPACE_MARK)
    tok.normalizer = normalizers.Sequence([normalizers.Prepend(_SPACE_MARK), escape]) if add_space_prefix else escape
    # Replace before ByteFallback: a "▁" spelled in byte tokens stays "▁", as in llama.cpp's token_to_piece;
    # Strip after Fuse removes the one prefix space of the whole text, not of every token.
    steps = [decoders.Replace(_SPACE_MARK, " "), decoders.ByteFallback(), decoders.Fuse()]
    if add_space_prefix:
        steps.append(decoders.Strip(content=" ", left=1))
    tok.decoder = decoders.Sequence(steps)
    tok.add_tokens(_added_tokens(tokens, types))
    template = _special_template(reader, tokens)
    if template is not None:
        tok.post_processor = template
    return tok


def _spm_merges(tokens: list[str], scores: list[float], vocab: dict[str, int]) -> list[tuple[str, str]]:
    """Every split of a piece into two pieces, best piece score first (equal scores: lower id first).

    SPM ranks all splits of one piece alike; their order here does not matter: inside a piece that forms, the
    merges are those of the piece alone, so only one of its splits is ever its last merge. Pieces with equal
    scores are ranked by id where llama.cpp would take the leftmost pair; only control/user-defined/byte pieces
    share scores in real vocabularies, and the first two are split off as added tokens before merging.
    """
    best_first = map(tokens.__getitem__, sorted(range(len(tokens)), key=scores.__getitem__, reverse=True))  # stable
    return [(p[:k], p[k:]) for p in best_first for k in range(1, len(p)) if p[:k] in vocab and p[k:] in vocab]


def spm_add_space_prefix(reader: gguf.GGUFReader) -> bool:
    """`tokenizer.ggml.add_space_prefix`; llama.cpp's default for SPM vocabularies is true (Gemma 3 says false)."""
    return bool(_field(reader, "tokenizer.ggml.add_space_prefix", True))


def _added_tokens(tokens: list[str], types: list[int]) -> list[AddedToken]:
    # Registered as added tokens so that text like "<|im_start|>" encodes as one id (llama.cpp's parse_special):
    # control and unknown tokens are special (skipped by decode(skip_special_tokens=True)), user-defined ones
    # are ordinary text. Not normalized: matched against the raw text, as llama.cpp does.
    special = (_TOKEN_TYPE_CONTROL, _TOKEN_TYPE_UNKNOWN)
    return [
        AddedToken(t, special=(ty in special), normalized=False)
        for t, ty in zip(tokens, types, strict=True)
        if ty in (*special, _TOKEN_TYPE_USER_DEFINED)
    ]


def _special_template(reader: gguf.GGUFReader, tokens: list[str]) -> processors.TemplateProcessing | None:
    """BOS/EOS that encode(add_special_tokens=True) adds, as the GGUF asks (default: `_add_bos_default`, no EOS)."""
    ends: dict[str, tuple[str, int]] = {}
    for key, default in (("bos", _add_bos_default(reader)), ("eos", False)):
        index = _field(reader, f"tokenizer.ggml.{key}_token_id")
        text = _token(tokens, index)
        if text is not None and bool(_field(reader, f"tokenizer.ggml.add_{key}_token", default)):
            ends[key] = (text, int(index))
    if not ends:
        return None
    bos = [ends["bos"][0]] if "bos" in ends else []
    eos = [ends["eos"][0]] if "eos" in ends else []

    def sequence(piece: str, type_id: int) -> str:
        return " ".join(f"{p}:{type_id}" for p in [*bos, piece, *eos])

    return processors.TemplateProcessing(
        single=sequence("$A", 0), pair=f"{sequence('$A', 0)} {sequence('$B', 1)}", special_tokens=list(ends.values())
    )


def _add_bos_default(reader: gguf.GGUFReader) -> bool:
    """llama.cpp's add_bos where the GGUF has no `tokenizer.ggml.add_bos_token`: SPM and the Llama 3 family add
    BOS, other byte-level BPE vocabularies do not."""
    if _required(reader, "tokenizer.ggml.model") == "llama":
        return True
    pre = _BPE_PRES.get(_field(reader, "tokenizer.ggml.pre", "default"))
    return pre is not None and pre.add_bos


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
    spm = _required(reader, "tokenizer.ggml.model") == "llama"
    config: dict[str, Any] = {
        "tokenizer_class": _tokenizer_class(arch) if spm else "GPT2Tokenizer",
        "add_bos_token": bool(_field(reader, "tokenizer.ggml.add_bos_token", _add_bos_default(reader))),
        "add_eos_token": bool(_field(reader, "tokenizer.ggml.add_eos_token", False)),
        # LlamaTokenizerFast rebuilds from the (absent) SentencePiece model when add_prefix_space is set
        **({} if spm else {"add_prefix_space": False}),
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


def _tokenizer_class(arch: str) -> str:
    return "GemmaTokenizer" if arch.startswith("gemma") else "LlamaTokenizer"


def write_tokenizer_files(reader: gguf.GGUFReader, out_dir: Path) -> None:
    """Write `tokenizer.json` and `tokenizer_config.json` for the GGUF's tokenizer into `out_dir`."""
    tokenizer = build_tokenizer(reader)
    config = build_tokenizer_config(reader, tokenizer)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(out_dir / "tokenizer.json"))
    (out_dir / "tokenizer_config.json").write_text(
        json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
