"""SentencePiece ("llama") GGUF vocabularies → tokenizer.json, checked against an independent port of llama.cpp's
SPM tokenizer (reference_spm.py): Gemma 3's real 262,144-token vocabulary and tiny synthetic ones."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import gguf
import pytest
from tokenizers import Tokenizer

from inference_service.models.gguf_tokenizer import (
    tokenizer_special_ids,
    write_tokenizer_files,
)
from tests.models.reference_spm import SpmReference
from tests.models.synthetic_gguf import write_gguf

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
    write_gguf(writer)
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
