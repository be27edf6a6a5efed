"""GGUF tokenizer metadata → HF tokenizer files, checked against the real default-model GGUF."""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import pytest
from tokenizers import Tokenizer

from inference_service.models.gguf_tokenizer import (
    UnsupportedTokenizerError,
    tokenizer_special_ids,
    write_tokenizer_files,
)


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


@pytest.mark.parametrize(("model", "pre", "match"), [("llama", "default", "'llama'"), ("gpt2", "qwen2", "'qwen2'")])
def test_unsupported_tokenizer_raises(tmp_path: Path, model: str, pre: str, match: str) -> None:
    reader = _tiny_gguf(tmp_path / "t.gguf", model, pre)
    with pytest.raises(UnsupportedTokenizerError, match=match):
        write_tokenizer_files(reader, tmp_path / "out")
    assert not (tmp_path / "out").exists()
