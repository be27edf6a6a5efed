"""GGUF tokenizer metadata → HF tokenizer files, checked against the real GGUFs and, for SentencePiece ("llama")
vocabularies, against an independent re-implementation of llama.cpp's SPM tokenizer (reference_spm.py)."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import random
from pathlib import Path
from typing import Any

import gguf
import pytest
from tokenizers import Tokenizer

from inference_service.models.gguf_tokenizer import (
    UnsupportedTokenizerError,
    tokenizer_special_ids,
    write_tokenizer_files,
)
from tests.models.reference_bpe import GPT2_REGEX, LLAMA3_REGEX, QWEN2_REGEX, BpeReference, learn_merges
from tests.models.reference_spm import SpmReference
from tests.models.synthetic_gguf import BOS_ID, EOS_ID, SPECIAL_TOKENS, tiny_vocab


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
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
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
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
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


# --- SentencePiece ("llama") vocabularies: Gemma 3's real GGUF ---------------------------------------------------


@pytest.fixture(scope="module")
def gemma_reader(gemma_gguf: Path) -> gguf.GGUFReader:
    return gguf.GGUFReader(gemma_gguf)


@pytest.fixture(scope="module")
def gemma_dir(gemma_reader: gguf.GGUFReader, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gemma-tok")
    write_tokenizer_files(gemma_reader, out)
    return out


@pytest.fixture(scope="module")
def gemma_tok(gemma_dir: Path) -> Tokenizer:
    return Tokenizer.from_file(str(gemma_dir / "tokenizer.json"))


def _reference(reader: gguf.GGUFReader) -> SpmReference:
    def field(key: str, default: Any = None) -> Any:
        return reader.fields[key].contents() if key in reader.fields else default

    return SpmReference(
        tokens=field("tokenizer.ggml.tokens"),
        scores=field("tokenizer.ggml.scores"),
        types=field("tokenizer.ggml.token_type"),
        add_space_prefix=bool(field("tokenizer.ggml.add_space_prefix", True)),  # llama.cpp's SPM default
        bos_id=field("tokenizer.ggml.bos_token_id"),
        add_bos=bool(field("tokenizer.ggml.add_bos_token", True)),
    )


@pytest.fixture(scope="module")
def gemma_ref(gemma_reader: gguf.GGUFReader) -> SpmReference:
    return _reference(gemma_reader)


@pytest.fixture(scope="module")
def gemma_vocab(gemma_reader: gguf.GGUFReader) -> list[str]:
    return gemma_reader.fields["tokenizer.ggml.tokens"].contents()


MULTILINGUAL = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "café niño über Ångström façade naïve résumé",
    "Größenwahn, Straßenbahn und Übermäßigkeit",
    "日本語のテキスト。中文测试，简体與繁體。한국어 문장",
    "مرحبا بالعالم، كيف حالك؟",
    "नमस्ते दुनिया, आप कैसे हैं?",
    "👨‍👩‍👧‍👦 🏳️‍🌈 🇩🇪🇯🇵🇺🇸 🤖👍🏽 🧑🏿‍🚀",
    "def f(x):\n    if x:\n        return x * 2\n\treturn None\n",
    "a  b   c    d     e" + " " * 40 + "f",
    "\n\n\n\nparagraph\n\n\n" + "\n" * 35 + "end\r\n",
    "31415926535 1,000,000.50 2024-06-01 0x1F",
    "  leading spaces and trailing ones  ",
    " ",
    "<table><tr><td>1</td></tr></table> <b>bold</b>",
    "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n4<end_of_turn>",
    "<bos>text between<eos> specials<unused12>",
]


@pytest.mark.parametrize("text", MULTILINGUAL)
def test_gemma_ids_match_llama_cpp(gemma_tok: Tokenizer, gemma_ref: SpmReference, text: str) -> None:
    assert gemma_tok.encode(text, add_special_tokens=False).ids == gemma_ref.tokenize(text)
    assert gemma_tok.encode(text).ids == gemma_ref.tokenize(text, add_special=True)  # <bos> first
    assert gemma_tok.decode(gemma_tok.encode(text).ids, skip_special_tokens=False) == "<bos>" + text


def test_gemma_random_text_matches_llama_cpp(gemma_tok: Tokenizer, gemma_ref: SpmReference) -> None:
    rng = random.Random(1234)
    alphabet = list("abcdefghijklmnopqrstuvwxyz ABCXYZ0123456789  \n\t.,;:!?'\"()[]{}<>/-_=+*&^%$#@~`|\\")
    alphabet += list("éüßñçøåæœ€£¥日本語中文한국어ابجدहिन्दी🙂👍🏽\u200d♀️🇫🇷\U0010fffd")
    alphabet += ["<start_of_turn>", "<eos>", "<unk>", "<td>", "  ", "\n\n", "the", " the", "ing", "\u2581"]
    for _ in range(500):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80)))
        ids = gemma_tok.encode(text, add_special_tokens=False).ids
        assert ids == gemma_ref.tokenize(text), repr(text)
        # a typed "▁" is a space to llama.cpp too
        assert gemma_tok.decode(ids, skip_special_tokens=False) == text.replace("\u2581", " "), repr(text)


def test_gemma_words_are_single_pieces(gemma_tok: Tokenizer, gemma_vocab: list[str]) -> None:
    enc = gemma_tok.encode("Hello world", add_special_tokens=False)
    assert enc.tokens == ["Hello", "\u2581world"]  # add_space_prefix is false: no "▁" before "Hello"
    assert enc.ids == [gemma_vocab.index("Hello"), gemma_vocab.index("\u2581world")]
    assert gemma_tok.encode(" Hello", add_special_tokens=False).tokens == ["\u2581Hello"]


def test_gemma_specials_map_as_the_gguf_says(
    gemma_tok: Tokenizer, gemma_reader: gguf.GGUFReader, gemma_vocab: list[str]
) -> None:
    types = gemma_reader.fields["tokenizer.ggml.token_type"].contents()
    for text in ("<bos>", "<eos>", "<pad>", "<unk>", "<start_of_turn>", "<end_of_turn>", "<unused0>"):
        (i,) = gemma_tok.encode(text, add_special_tokens=False).ids
        assert gemma_vocab[i] == text and types[i] == gguf.TokenType.CONTROL
        assert gemma_tok.decode([i]) == ""  # special: skipped
    assert gemma_vocab.index("<start_of_turn>") == 105 and gemma_vocab.index("<end_of_turn>") == 106
    assert tokenizer_special_ids(gemma_reader) == {"bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0}
    # user-defined pieces ("\n\n", runs of spaces, HTML tags) are whole tokens, kept by decode
    for text in ("\n\n", "   ", "<table>"):
        (i,) = gemma_tok.encode(text, add_special_tokens=False).ids
        assert gemma_vocab[i] == text and types[i] == gguf.TokenType.USER_DEFINED
        assert gemma_tok.decode([i]) == text


def test_gemma_byte_fallback(gemma_tok: Tokenizer, gemma_vocab: list[str]) -> None:
    rare = "\U0010fffd"  # a private-use character no piece covers
    assert rare not in gemma_vocab
    ids = gemma_tok.encode(rare, add_special_tokens=False).ids
    assert [gemma_vocab[i] for i in ids] == [f"<0x{b:02X}>" for b in rare.encode()]
    assert gemma_tok.decode(ids) == rare
    assert gemma_tok.decode([gemma_vocab.index(f"<0x{b:02X}>") for b in "€".encode()]) == "€"


def test_gemma_tokenizer_files(gemma_dir: Path) -> None:
    spec = json.loads((gemma_dir / "tokenizer.json").read_text())
    assert spec["model"]["type"] == "BPE" and spec["model"]["byte_fallback"] is True
    assert len(spec["model"]["vocab"]) == 262144
    assert spec["normalizer"] == {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}
    assert spec["pre_tokenizer"] is None
    assert [d["type"] for d in spec["decoder"]["decoders"]] == ["Replace", "ByteFallback", "Fuse"]  # no Strip
    config = json.loads((gemma_dir / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "GemmaTokenizer"
    assert config["add_bos_token"] is True and config["add_eos_token"] is False
    assert (config["bos_token"], config["eos_token"], config["unk_token"], config["pad_token"]) == (
        "<bos>",
        "<eos>",
        "<unk>",
        "<pad>",
    )
    assert config["model_max_length"] == 32768
    assert "chat_template" not in config  # a base model
    assert config["added_tokens_decoder"]["106"]["content"] == "<end_of_turn>"


# --- SentencePiece: a tiny synthetic vocabulary (Llama 2 style: "▁" prefix, byte fallback) --------------------------

# (piece, score): scores chosen so that best-score-first differs from longest-match and left-to-right merging
_PIECES = [
    ("\u2581", -1.0),
    *((c, -2.0 - i * 0.01) for i, c in enumerate("abcdehlorw!,")),
    ("ab", -5.0),
    ("bc", -3.0),  # beats "ab": "abc" → a + bc
    ("abc", -6.0),
    ("cd", -8.0),
    ("abcd", -4.0),
    ("\u2581a", -7.0),
    ("\u2581ab", -9.0),
    ("he", -10.0),
    ("ll", -10.5),
    ("el", -9.5),
    ("hel", -11.0),
    ("lo", -12.0),
    ("llo", -12.5),
    ("hello", -13.0),
    ("\u2581hello", -14.0),
    ("wo", -15.0),
    ("or", -15.5),
    ("ld", -16.0),
    ("wor", -16.5),
    ("world", -17.0),
    ("\u2581world", -17.5),
    ("\u2581\u2581", -18.0),
    ("\u2581\u2581\u2581\u2581", -18.5),
    ("aa", -19.0),
    ("aaa", -19.5),
    ("aaaa", -20.0),
    ("er", -21.0),
    ("rw", -20.5),  # a later id but a better score than "er": "erw" is e + rw
]


def _tiny_spm_gguf(path: Path, add_space_prefix: bool | None) -> gguf.GGUFReader:
    tokens = ["<unk>", "<s>", "</s>", *(f"<0x{b:02X}>" for b in range(256)), "<|tool|>", *(p for p, _ in _PIECES)]
    scores = [0.0] * (3 + 256 + 1) + [s for _, s in _PIECES]
    types = [
        gguf.TokenType.UNKNOWN,
        gguf.TokenType.CONTROL,
        gguf.TokenType.CONTROL,
        *[gguf.TokenType.BYTE] * 256,
        gguf.TokenType.USER_DEFINED,
        *[gguf.TokenType.NORMAL] * len(_PIECES),
    ]
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(4096)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    if add_space_prefix is not None:  # missing: llama.cpp's SPM default, true
        writer.add_add_space_prefix(add_space_prefix)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return gguf.GGUFReader(path)


SYNTHETIC = [
    "hello world",
    "abc abcd abcabc erw werw",
    "aaaaaaa aaaaa",
    "  hello   world    ",
    "héllo wörld 日本 🙂",  # é, ö, CJK and emoji have no piece: <0xAB> bytes
    "<s>hello</s> world<s> a",
    "hello<|tool|>world <unk>",
    "\n\tcontrol\x00chars\x7f",
    "",
]


@pytest.mark.parametrize("add_space_prefix", [None, True, False])
def test_synthetic_spm_matches_llama_cpp(tmp_path: Path, add_space_prefix: bool | None) -> None:
    reader = _tiny_spm_gguf(tmp_path / "spm.gguf", add_space_prefix)
    write_tokenizer_files(reader, tmp_path / "out")
    tok = Tokenizer.from_file(str(tmp_path / "out" / "tokenizer.json"))
    ref = _reference(reader)
    rng = random.Random(7)
    alphabet = [*"abcdehlorw!, ", "\n", "é", "日", "🙂", "  ", "<s>", "</s>", "<|tool|>", "hello", "world"]
    random_texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 30))) for _ in range(300)]
    for text in SYNTHETIC + random_texts:
        ids = tok.encode(text, add_special_tokens=False).ids
        assert ids == ref.tokenize(text), repr(text)
        assert tok.encode(text).ids == ref.tokenize(text, add_special=True), repr(text)  # BOS by default
        # llama.cpp prefixes "▁" after every special token too, and strips only the first one again
        prefixed_after_special = add_space_prefix is not False and any(t in text for t in ("<s>", "</s>", "<|tool|>"))
        if not prefixed_after_special:
            assert tok.decode(ids, skip_special_tokens=False) == text, repr(text)


def test_synthetic_spm_merges_by_score(tmp_path: Path) -> None:
    reader = _tiny_spm_gguf(tmp_path / "spm.gguf", None)
    write_tokenizer_files(reader, tmp_path / "out")
    tok = Tokenizer.from_file(str(tmp_path / "out" / "tokenizer.json"))
    assert tok.encode("hello world", add_special_tokens=False).tokens == ["\u2581hello", "\u2581world"]
    # ▁ a b c d: "bc" (-3) first, then "abc" (-6, the best pair left), then "abcd" (-4); a longest-prefix match
    # would give "▁ab" + "cd"
    assert tok.encode("abcd", add_special_tokens=False).tokens == ["\u2581", "abcd"]
    assert tok.encode("erw", add_special_tokens=False).tokens == ["\u2581", "e", "rw"]
    assert tok.encode("é", add_special_tokens=False).tokens == ["\u2581", "<0xC3>", "<0xA9>"]
    config = json.loads((tmp_path / "out" / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "LlamaTokenizer"
    assert config["add_bos_token"] is True  # llama.cpp's SPM default
    assert "add_prefix_space" not in config  # LlamaTokenizerFast would rebuild from a SentencePiece model
    spec = json.loads((tmp_path / "out" / "tokenizer.json").read_text())
    assert spec["decoder"]["decoders"][-1] == {"type": "Strip", "content": " ", "start": 1, "stop": 0}
    assert tok.decode(tok.encode("hello world").ids) == "hello world"  # the prefix space is stripped again
