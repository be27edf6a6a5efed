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
from inference_service.engine.tokenizer import ChatTemplateError, Tokenizer
from inference_service.engine.types import ChatMessage
from inference_service.models.gguf_tokenizer import write_tokenizer_files
from tests.models.synthetic_gguf import write_gguf

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


def test_chat_template_file_overrides_the_folder(model_files: Path, tmp_path: Path) -> None:
    folder = _hf_folder(model_files, tmp_path / "hf", {"chat_template": "config"})
    (folder / "chat_template.jinja").write_text("folder")
    override = tmp_path / "mine.jinja"
    override.write_text("{{ bos_token }}{% for m in messages %}<{{ m.role }}:{{ m.content }}>{% endfor %}")
    tok = Tokenizer.from_dir(folder, chat_template=override)
    assert tok.chat_template == override.read_text()
    assert tok.apply_chat_template([ChatMessage("user", "a")]) == "<user:a>"  # no bos_token in this config
    assert Tokenizer.from_dir(folder).apply_chat_template([ChatMessage("user", "a")]) == "folder"


def test_chat_template_file_gives_a_base_model_chat(model_files: Path, tmp_path: Path) -> None:
    folder = _hf_folder(model_files, tmp_path / "hf", {})
    override = tmp_path / "chatml.jinja"
    override.write_text("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}")
    tok = Tokenizer.from_dir(folder, chat_template=override)
    assert tok.apply_chat_template([ChatMessage("user", "Hi")], add_generation_prompt=False) == _chatml(
        ("user", "Hi"), prompt=False
    )


def _bad_template(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.jinja"
    if kind == "folder":
        path.mkdir()
    elif kind == "latin1":
        path.write_bytes("{{ 'café' }}".encode("latin-1"))
    elif kind == "syntax":
        path.write_text("{% for m in messages %}{{ m.content }}")
    return path  # "missing": not created


@pytest.mark.parametrize(
    ("kind", "match"),
    [
        ("missing", "missing.jinja: cannot be read: No such file or directory"),
        ("folder", "folder.jinja: cannot be read: Is a directory"),
        ("latin1", "latin1.jinja: cannot be read: 'utf-8' codec can't decode"),
        ("syntax", "syntax.jinja: line 1: .*endfor"),
    ],
)
def test_bad_chat_template_file_fails_at_load(model_files: Path, tmp_path: Path, kind: str, match: str) -> None:
    folder = _hf_folder(model_files, tmp_path / "hf", {})
    with pytest.raises(ChatTemplateError, match=match):
        Tokenizer.from_dir(folder, chat_template=_bad_template(tmp_path, kind))


def test_no_chat_template_tells_what_to_do(model_files: Path, tmp_path: Path) -> None:
    tok = Tokenizer.from_dir(_hf_folder(model_files, tmp_path / "hf", {}))
    assert tok.chat_template is None
    with pytest.raises(InvalidRequestError) as info:
        tok.apply_chat_template([ChatMessage("user", "a")])
    assert info.value.param == "messages"
    message = str(info.value)
    assert "no chat template" in message
    assert "/v1/completions" in message  # the client's way out
    assert "--chat-template FILE (ORTSERVE_CHAT_TEMPLATE)" in message  # the operator's


def _spm_gguf(path: Path, add_space_prefix: bool) -> gguf.GGUFReader:
    """A tiny SentencePiece ("llama") vocabulary: byte tokens, and pieces scored best-first by position."""
    pieces = ["\u2581", *"Helowrd", "He", "ll", "llo", "Hello", "\u2581Hello", "or", "ld", "wor", "world"]
    pieces.append("\u2581world")
    tokens = ["<unk>", "<s>", "</s>", *(f"<0x{b:02X}>" for b in range(256)), *pieces]
    types = [2, 3, 3, *[gguf.TokenType.BYTE] * 256, *[gguf.TokenType.NORMAL] * len(pieces)]
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores([0.0] * (3 + 256) + [-float(i) for i in range(len(pieces))])
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_add_space_prefix(add_space_prefix)
    write_gguf(writer)
    return gguf.GGUFReader(path)


@pytest.mark.parametrize("add_space_prefix", [True, False])
def test_converted_sentencepiece_token_bytes(tmp_path: Path, add_space_prefix: bool) -> None:
    write_tokenizer_files(_spm_gguf(tmp_path / "spm.gguf", add_space_prefix), tmp_path / "m")
    tok = Tokenizer.from_dir(tmp_path / "m")
    ids = tok.encode("Hello world é")
    pieces = [tok.id_to_token(i) for i in ids]
    assert pieces[-3:] == ["\u2581", "<0xC3>", "<0xA9>"]  # no piece for "é": UTF-8 bytes
    assert pieces[:2] == (["\u2581Hello", "\u2581world"] if add_space_prefix else ["Hello", "\u2581world"])
    assert [tok.token_bytes(i) for i in ids[-2:]] == [b"\xc3", b"\xa9"]
    assert tok.token_bytes(ids[1]) == b" world"
    # token bytes are the raw text, with llama.cpp's prefix space; decode strips that one space again
    prefix = b" " if add_space_prefix else b""
    assert b"".join(tok.token_bytes(i) for i in ids) == prefix + "Hello world é".encode()
    assert tok.decode(ids) == "Hello world é"
    assert tok.eos_token_ids == (2,) and tok.bos_token_id == 1
    assert tok.encode("Hi", add_special_tokens=True)[0] == 1  # SPM: BOS by default
