"""Byte-level BPE ("gpt2") GGUF vocabularies → HF tokenizer files: the real default model's, and synthetic ones with
Llama 3's and Qwen2's pre-tokenizers against an independent reference (reference_bpe.py). SentencePiece vocabularies:
test_gguf_tokenizer_spm.py."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import random
from pathlib import Path

import gguf
import pytest
from tokenizers import Tokenizer

from inference_service.models.gguf_tokenizer import (
    UnsupportedTokenizerError,
    tokenizer_special_ids,
    write_tokenizer_files,
)
from tests.models.reference_bpe import GPT2_REGEX, LLAMA3_REGEX, QWEN2_REGEX, BpeReference, learn_merges
from tests.models.synthetic_gguf import BOS_ID, EOS_ID, SPECIAL_TOKENS, tiny_vocab, write_gguf


@pytest.fixture(scope="module")
def reader(gguf_path: Path) -> gguf.GGUFReader:
    return gguf.GGUFReader(gguf_path)


@pytest.fixture(scope="module")
def out_dir(reader: gguf.GGUFReader, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tok")
    write_tokenizer_files(reader, out)
    return out


@pytest.fixture(scope="module")
def tok(out_dir: Path) -> Tokenizer:
    return Tokenizer.from_file(str(out_dir / "tokenizer.json"))


def test_tokenizer_json_structure(out_dir: Path) -> None:
    spec = json.loads((out_dir / "tokenizer.json").read_text())
    assert spec["model"]["type"] == "BPE"
    assert len(spec["model"]["vocab"]) == 49152
    assert len(spec["model"]["merges"]) == 48900
    assert spec["pre_tokenizer"]["type"] == "Sequence"
    digits, byte_level = spec["pre_tokenizer"]["pretokenizers"]
    assert digits == {"type": "Digits", "individual_digits": True}
    assert byte_level["type"] == "ByteLevel"
    assert byte_level["add_prefix_space"] is False
    assert byte_level["use_regex"] is True
    assert spec["decoder"]["type"] == "ByteLevel"
    special = {t["content"]: t["id"] for t in spec["added_tokens"] if t["special"]}
    assert len(special) == 17
    assert special["<|endoftext|>"] == 0
    assert special["<|im_start|>"] == 1
    assert special["<|im_end|>"] == 2


def test_tokenizer_config(out_dir: Path, reader: gguf.GGUFReader) -> None:
    config = json.loads((out_dir / "tokenizer_config.json").read_text())
    assert config["bos_token"] == "<|im_start|>"
    assert config["eos_token"] == "<|im_end|>"
    assert config["unk_token"] == "<|endoftext|>"
    assert config["pad_token"] == "<|im_end|>"
    assert config["add_bos_token"] is False
    assert config["model_max_length"] == 8192
    assert config["chat_template"] == reader.fields["tokenizer.chat_template"].contents()
    assert "You are a helpful AI assistant named SmolLM" in config["chat_template"]


def test_special_ids(reader: gguf.GGUFReader) -> None:
    assert tokenizer_special_ids(reader) == {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2}


def test_known_encodings(tok: Tokenizer) -> None:
    enc = tok.encode("Hello world")
    assert enc.tokens == ["Hello", "Ġworld"]
    assert tok.encode("12345").tokens == ["1", "2", "3", "4", "5"]
    assert tok.encode(" 2024!").tokens == ["Ġ", "2", "0", "2", "4", "!"]
    assert tok.encode("<|im_start|>user\nhi<|im_end|>").ids[0::4] == [1, 2]


@pytest.mark.parametrize(
    "text",
    [
        "Hello, world!",
        "  leading and trailing  \n\n\tTabs\r\n",
        "café niño über",
        "日本語のテキスト 中文",
        "👨‍👩‍👧‍👦 🏳️‍🌈 🤖",
        "x = f(1234567890) + 3.14e-2",
        "it's we'll they'd I'M",
    ],
)
def test_round_trip(tok: Tokenizer, text: str) -> None:
    assert tok.decode(tok.encode(text).ids) == text


def test_control_tokens_skipped_on_decode(tok: Tokenizer) -> None:
    ids = tok.encode("<|im_start|>assistant\nHi<|im_end|>").ids
    assert tok.decode(ids, skip_special_tokens=True) == "assistant\nHi"
    assert tok.decode(ids, skip_special_tokens=False) == "<|im_start|>assistant\nHi<|im_end|>"


def _tiny_gguf(path: Path, model: str, pre: str = "gpt2") -> gguf.GGUFReader:
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tokenizer_model(model)
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(["a", "b", "ab"])
    writer.add_token_merges(["a b"])
    write_gguf(writer)
    return gguf.GGUFReader(path)


def test_tiny_gpt2_gguf_converts(tmp_path: Path) -> None:
    write_tokenizer_files(_tiny_gguf(tmp_path / "t.gguf", "gpt2"), tmp_path / "out")
    tok = Tokenizer.from_file(str(tmp_path / "out" / "tokenizer.json"))
    assert tok.encode("abab").ids == [2, 2]


@pytest.mark.parametrize(
    ("model", "pre", "match"),
    [
        ("t5", "default", "'t5'"),
        # the message lists the known names
        ("gpt2", "qwen35", r"'qwen35' is not supported \(known: .*'?llama-bpe'?.*qwen2.*smollm"),
    ],
)
def test_unsupported_tokenizer_raises(tmp_path: Path, model: str, pre: str, match: str) -> None:
    reader = _tiny_gguf(tmp_path / "t.gguf", model, pre)
    with pytest.raises(UnsupportedTokenizerError, match=match):
        write_tokenizer_files(reader, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_smollm2_tokenizer_files_unchanged(out_dir: Path) -> None:
    # The real default GGUF's files, byte for byte, as written before the Llama 3 / Qwen2 pre-tokenizers came
    # (tokenizers 0.23.3; a tokenizers release that serializes differently changes the first hash).
    digest = {name: hashlib.sha256((out_dir / name).read_bytes()).hexdigest() for name in sorted(os.listdir(out_dir))}
    assert digest == {
        "tokenizer.json": "75b3182b3a5a2af0f60d57fa1002a42242c0abc4d1954d1bdda925dbb5c7601e",
        "tokenizer_config.json": "362ae18464fb912d2a9abedc09a9bda879bda37884c534414e80a24da976f391",
    }


# --- byte-level BPE with Llama 3's and Qwen2's pre-tokenizers: synthetic GGUFs against reference_bpe.py -------------

BPE_TEXTS = [
    # contractions, either case (llama.cpp spells Llama 3's/Qwen2's (?i:'s|...) as '[sS]...; GPT-2's is lower-case)
    "it's we'll they'd I'M YOU'RE we've SHE'D don'T 'Sup 'Tis 'twas rock'n'roll",
    "DON'THINK I'Ma WE'LLBE O'Reilly Y'ALL she'sgone it'Ds we'VEry",  # an upper-case contraction, then letters
    # numbers: Llama 3 in groups of up to 3 digits, Qwen2 one by one, GPT-2 whole runs
    "1 12 123 1234 12345 1234567 2024-05-17 3.14159 v1.2.30 x=10000000 (42) ²³ ½ Ⅻ ٣٤٥",
    # punctuation runs, a non-letter before letters, punctuation before newlines
    "Hello!!! What?! ... --> (a+b)*c; {'k': [1, 2]} #!/bin/sh $hello @user _under x-ray end.\n\nNext:\r\n"
    "One.\nTwo.\nThree.\n",
    # whitespace runs and newlines
    "line one\nline two\n\n\nindented\n    four spaces\ttab\r\nCRLF  \n  trailing   \n a  b   c    d ",
    "   \n\n  \t\n",
    # accents (precomposed and combining), CJK, emoji, non-ASCII spaces
    "café naïve Ångström über señor Øresund cafe\u0301 日本語のテキスト、中文。한국어 👨‍👩‍👧‍👦 🏳️‍🌈 🤖!",
    "a\u00a0b\u3000c\u2003 d\u0085e",
    "Qwen2.5-0.5B-Instruct costs $0.25/1M tokens; Llama-3.2-1B's context is 131072.",
    "<|im_start|>user\nhi 123<|im_end|>\n<|im_start|>assistant\n",
]
_UNMERGEABLE = "\u0120quokka"  # " quokka" as byte characters: a vocabulary piece that no merge builds


@functools.cache
def _bpe_vocab() -> tuple[list[str], list[int], list[tuple[str, str]]]:
    specials_and_bytes, types, _ = tiny_vocab(n_merges=0)
    merges = learn_merges(BPE_TEXTS, 1000)
    # two merges may build the same piece ("ab c", "a bc"): one token
    tokens = list(dict.fromkeys([*specials_and_bytes, *(a + b for a, b in merges)]))
    assert _UNMERGEABLE not in tokens
    tokens.append(_UNMERGEABLE)
    return tokens, [*types, *[int(gguf.TokenType.NORMAL)] * (len(tokens) - len(types))], merges


def _bpe_gguf(path: Path, pre: str, add_bos: bool | None) -> gguf.GGUFReader:
    tokens, types, merges = _bpe_vocab()
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges([f"{a} {b}" for a, b in merges])
    writer.add_bos_token_id(BOS_ID)
    writer.add_eos_token_id(EOS_ID)
    if add_bos is not None:  # missing: llama.cpp's default, true for the Llama 3 family only
        writer.add_add_bos_token(add_bos)
    write_gguf(writer)
    return gguf.GGUFReader(path)


def _bpe_reference(pre: str, add_bos: bool) -> BpeReference:
    tokens, _, merges = _bpe_vocab()
    llama3 = pre in ("llama-bpe", "llama3")
    return BpeReference(
        tokens,
        merges,
        LLAMA3_REGEX if llama3 else QWEN2_REGEX,
        specials=list(SPECIAL_TOKENS),
        ignore_merges=llama3,
        bos_id=BOS_ID if add_bos else None,
    )


@pytest.mark.parametrize(
    ("pre", "add_bos", "expect_bos"),
    [
        ("llama-bpe", True, True),
        ("llama-bpe", None, True),  # llama.cpp: the Llama 3 family adds BOS unless the GGUF says otherwise
        ("llama3", False, False),
        ("qwen2", None, False),
        ("qwen2", False, False),
        ("qwen2", True, True),
    ],
)
def test_bpe_pre_tokenizers_match_llama_cpp(tmp_path: Path, pre: str, add_bos: bool | None, expect_bos: bool) -> None:
    reader = _bpe_gguf(tmp_path / "bpe.gguf", pre, add_bos)
    write_tokenizer_files(reader, tmp_path / "out")
    tok = Tokenizer.from_file(str(tmp_path / "out" / "tokenizer.json"))
    ref, plain = _bpe_reference(pre, expect_bos), _bpe_reference(pre, False)
    rng = random.Random(11)
    alphabet = [*"aZ'sStT19 .!-\n\r\t", "'ll", "'RE", "123", "  ", "é", "e\u0301", "日", "🤖", "\u00a0", "<|im_end|>"]
    random_texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 25))) for _ in range(300)]
    for text in [*BPE_TEXTS, " quokka", "quokka", *random_texts]:
        assert tok.encode(text).ids == ref.encode(text), repr(text)
        ids = tok.encode(text, add_special_tokens=False).ids
        assert ids == plain.encode(text), repr(text)
        assert tok.decode(ids, skip_special_tokens=False) == text, repr(text)
    config = json.loads((tmp_path / "out" / "tokenizer_config.json").read_text())
    assert config["add_bos_token"] is expect_bos
    assert config["tokenizer_class"] == "GPT2Tokenizer"


def test_bpe_texts_tell_the_regexes_apart() -> None:
    # Otherwise the comparison above could not fail: the merges, learnt across split boundaries, turn each regex's
    # own split into its own ids.
    ref = _bpe_reference("qwen2", False)
    lower_case = LLAMA3_REGEX.replace(
        "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])", "'s|'t|'re|'ve|'m|'ll|'d"
    )

    def differ(regex_a: str, regex_b: str) -> list[int]:
        ids = {}
        for regex in (regex_a, regex_b):
            ref.regex = regex
            ids[regex] = [ref.encode(t) for t in BPE_TEXTS]
        return [i for i, (a, b) in enumerate(zip(*ids.values(), strict=True)) if a != b]

    assert differ(LLAMA3_REGEX, lower_case) == [1]  # upper-case contractions followed by letters
    assert differ(LLAMA3_REGEX, QWEN2_REGEX) == [2, 9]  # the texts with digit runs
    assert differ(LLAMA3_REGEX, GPT2_REGEX) == [0, 1, 2, 3, 4, 8, 9]


def test_bpe_llama3_splits_and_ignore_merges(tmp_path: Path) -> None:
    write_tokenizer_files(_bpe_gguf(tmp_path / "l.gguf", "llama-bpe", None), tmp_path / "l")
    write_tokenizer_files(_bpe_gguf(tmp_path / "q.gguf", "qwen2", None), tmp_path / "q")
    llama3 = Tokenizer.from_file(str(tmp_path / "l" / "tokenizer.json"))
    qwen2 = Tokenizer.from_file(str(tmp_path / "q" / "tokenizer.json"))
    pieces = llama3.pre_tokenizer.pre_tokenize_str("I'M 12345 O'Reilly  \n\nok")
    assert [p for p, _ in pieces] == ["I", "'M", "Ġ", "123", "45", "ĠO", "'Re", "illy", "ĠĠĊĊ", "ok"]
    pieces = qwen2.pre_tokenizer.pre_tokenize_str("12345 x")
    assert [p for p, _ in pieces] == ["1", "2", "3", "4", "5", "Ġx"]
    # llama.cpp's ignore_merges (LLAMA3 only): a pre-token that is a vocabulary piece is one token
    assert llama3.encode(" quokka", add_special_tokens=False).tokens == [_UNMERGEABLE]
    assert len(qwen2.encode(" quokka", add_special_tokens=False).ids) > 1
    assert llama3.encode("hi").ids[0] == BOS_ID and qwen2.encode("hi").ids[0] != BOS_ID
    spec = json.loads((tmp_path / "l" / "tokenizer.json").read_text())
    split, byte_level = spec["pre_tokenizer"]["pretokenizers"]
    assert split["type"] == "Split" and split["behavior"] == "Isolated" and split["invert"] is False
    assert byte_level == {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}
    assert spec["model"]["ignore_merges"] is True
    assert [p["type"] for p in spec["post_processor"]["processors"]] == ["ByteLevel", "TemplateProcessing"]
