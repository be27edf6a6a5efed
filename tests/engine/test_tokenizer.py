"""Engine tokenizer over tokenizer files written from the real GGUF, plus hand-made HF-style folders."""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path

import gguf
import pytest
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders
from tokenizers.models import BPE

from inference_service.engine.errors import InvalidRequestError
from inference_service.engine.tokenizer import Tokenizer
from inference_service.engine.types import ChatMessage
from inference_service.models.gguf_tokenizer import write_tokenizer_files

DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


@pytest.fixture(scope="module")
def model_files(gguf_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("smollm-tok")
    write_tokenizer_files(gguf.GGUFReader(gguf_path), out)
    return out


@pytest.fixture(scope="module")
def tok(model_files: Path) -> Tokenizer:
    return Tokenizer.from_dir(model_files)


def test_attributes(tok: Tokenizer) -> None:
    assert tok.vocab_size == 49152
    assert tok.eos_token_ids == (2,)
    assert tok.bos_token_id == 1
    assert tok.id_to_token(1) == "<|im_start|>"
    assert tok.id_to_token(10**6) == ""


@pytest.mark.parametrize(
    "text",
    [
        "The quick brown fox jumps over the lazy dog.",
        "é ñ ü Ångström façade",
        "東京は日本の首都です。中文测试",
        "😀 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈",
        "  two spaces\n\nnewlines\ttab \r\n end ",
        "0123456789",
        "",
    ],
)
def test_round_trip(tok: Tokenizer, text: str) -> None:
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    # token_bytes is the exact byte image of each token
    assert b"".join(tok.token_bytes(i) for i in ids) == text.encode("utf-8")


def test_digits_are_single_tokens(tok: Tokenizer) -> None:
    ids = tok.encode("31415926")
    assert len(ids) == 8
    assert [tok.decode([i]) for i in ids] == list("31415926")


def test_hello_world_is_two_tokens(tok: Tokenizer) -> None:
    ids = tok.encode("Hello world")
    assert [tok.id_to_token(i) for i in ids] == ["Hello", "Ġworld"]


def test_special_tokens(tok: Tokenizer) -> None:
    assert tok.encode("<|im_start|>") == [1]
    assert tok.encode("<|im_end|>") == [2]
    ids = tok.encode("<|im_start|>user\nHi<|im_end|>\n")
    assert ids[0] == 1 and 2 in ids
    assert tok.decode(ids) == "user\nHi\n"
    assert tok.decode(ids, skip_special_tokens=False) == "<|im_start|>user\nHi<|im_end|>\n"
    assert tok.is_special(2) and not tok.is_special(ids[1])
    assert tok.token_bytes(2) == b"<|im_end|>"
    # add_bos_token is false for this model
    assert tok.encode("Hi", add_special_tokens=True) == tok.encode("Hi")


def test_token_bytes_partial_character(tok: Tokenizer) -> None:
    ids = tok.encode("🤖")
    assert len(ids) > 1  # split inside the 4-byte character
    parts = [tok.token_bytes(i) for i in ids]
    assert b"".join(parts) == "🤖".encode()
    with pytest.raises(UnicodeDecodeError):
        parts[0].decode("utf-8")


def _chatml(*turns: tuple[str, str], prompt: bool = True) -> str:
    text = "".join(f"<|im_start|>{role}\n{content}<|im_end|>\n" for role, content in turns)
    return text + ("<|im_start|>assistant\n" if prompt else "")


def test_chat_template_default_system_prompt(tok: Tokenizer) -> None:
    question = "What is the capital of France?"
    rendered = tok.apply_chat_template([ChatMessage("user", question)])
    assert rendered == _chatml(("system", DEFAULT_SYSTEM), ("user", question))


def test_chat_template_explicit_system(tok: Tokenizer) -> None:
    messages = [ChatMessage("system", "Be terse."), ChatMessage("user", "What is the capital of France?")]
    assert tok.apply_chat_template(messages) == _chatml(
        ("system", "Be terse."), ("user", "What is the capital of France?")
    )
    assert tok.apply_chat_template(messages, add_generation_prompt=False) == _chatml(
        ("system", "Be terse."), ("user", "What is the capital of France?"), prompt=False
    )


def test_developer_role_is_system_for_chatml(tok: Tokenizer) -> None:
    messages = [ChatMessage("developer", "Be terse."), ChatMessage("user", "Hi")]
    assert tok.apply_chat_template(messages) == _chatml(("system", "Be terse."), ("user", "Hi"))


def test_chat_template_multi_turn(tok: Tokenizer) -> None:
    messages = [ChatMessage("user", "Hi"), ChatMessage("assistant", "Hello!"), ChatMessage("user", "Bye")]
    assert tok.apply_chat_template(messages) == _chatml(
        ("system", DEFAULT_SYSTEM), ("user", "Hi"), ("assistant", "Hello!"), ("user", "Bye")
    )


def _hf_folder(src: Path, dst: Path, config: Mapping[str, object]) -> Path:
    dst.mkdir()
    shutil.copy(src / "tokenizer.json", dst / "tokenizer.json")
    (dst / "tokenizer_config.json").write_text(json.dumps(config))
    return dst


def test_hf_style_folder(model_files: Path, tmp_path: Path) -> None:
    # Special tokens as AddedToken dicts, named templates, eos ids from genai_config / generation_config.
    template = (
        "{{ bos_token }}{% for m in messages %}"
        "{% if m.role == 'tool' %}{{ raise_exception('no tools') }}{% endif %}"
        "{{ m.role }}{% if m.name %}({{ m.name }}){% endif %}: {{ m.content | tojson }}\n"
        "{% endfor %}{% if add_generation_prompt %}>{% endif %}"
    )
    folder = _hf_folder(
        model_files,
        tmp_path / "hf",
        {
            "bos_token": {"content": "<|im_start|>", "__type": "AddedToken"},
            "eos_token": {"content": "<|im_end|>", "__type": "AddedToken"},
            "chat_template": [
                {"name": "tool_use", "template": "x"},
                {"name": "default", "template": template},
            ],
        },
    )
    (folder / "genai_config.json").write_text(json.dumps({"model": {"eos_token_id": [2, 0]}}))
    (folder / "generation_config.json").write_text(json.dumps({"eos_token_id": 5}))
    tok = Tokenizer.from_dir(folder)
    assert tok.eos_token_ids == (2, 0, 5)
    assert tok.bos_token_id == 1
    rendered = tok.apply_chat_template([ChatMessage("user", 'héllo "q"', name="bob")])
    assert rendered == '<|im_start|>user(bob): "héllo \\"q\\""\n>'
    with pytest.raises(InvalidRequestError, match="no tools"):
        tok.apply_chat_template([ChatMessage("tool", "x")])


def test_chat_template_jinja_file_wins(model_files: Path, tmp_path: Path) -> None:
    folder = _hf_folder(model_files, tmp_path / "hf", {"chat_template": "ignored"})
    (folder / "chat_template.jinja").write_text("{% for m in messages %}[{{ m.content }}]{% endfor %}")
    assert Tokenizer.from_dir(folder).apply_chat_template([ChatMessage("user", "a")]) == "[a]"


@pytest.mark.parametrize("config", [{}, {"chat_template": "{% for m in messages %}"}])
def test_missing_or_broken_template(model_files: Path, tmp_path: Path, config: dict[str, object]) -> None:
    tok = Tokenizer.from_dir(_hf_folder(model_files, tmp_path / "hf", config))
    with pytest.raises(InvalidRequestError):
        tok.apply_chat_template([ChatMessage("user", "a")])


def test_sandbox_blocks_attribute_access(model_files: Path, tmp_path: Path) -> None:
    config = {"chat_template": "{{ messages.__class__.__mro__ }}"}
    tok = Tokenizer.from_dir(_hf_folder(model_files, tmp_path / "hf", config))
    with pytest.raises(InvalidRequestError):
        tok.apply_chat_template([ChatMessage("user", "a")])


def test_sentencepiece_style_token_bytes(tmp_path: Path) -> None:
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "<0x0A>": 3, "<0xE2>": 4, "▁Hi": 5, "!": 6}
    hf = HFTokenizer(BPE(vocab=vocab, merges=[], unk_token="<unk>", byte_fallback=True))
    hf.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    (tmp_path / "m").mkdir()
    hf.save(str(tmp_path / "m" / "tokenizer.json"))
    tok = Tokenizer.from_dir(tmp_path / "m")
    assert tok.token_bytes(3) == b"\n"
    assert tok.token_bytes(4) == b"\xe2"
    assert tok.token_bytes(5) == b" Hi"
    assert tok.eos_token_ids == ()


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        Tokenizer.from_dir(tmp_path)
