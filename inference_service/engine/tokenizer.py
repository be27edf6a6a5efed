"""Tokenizer + chat template over a model folder's standard Hugging Face files.

Reads `tokenizer.json` and `tokenizer_config.json` (plus, when present, `chat_template.jinja`,
`genai_config.json` and `generation_config.json` for extra eos ids), as written by our GGUF converter,
ONNX Runtime GenAI's model builder or Hugging Face itself.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer as HFTokenizer

from inference_service.engine.errors import InvalidRequestError
from inference_service.engine.tool_calls import tool_specs, with_tool_prompt
from inference_service.engine.types import ChatMessage, Tool

_SPECIAL_NAMES = ("bos_token", "eos_token", "unk_token", "pad_token")
_NO_TEMPLATE = (
    "this model has no chat template (a base model?): send a prompt to the completions endpoint "
    "(/v1/completions) instead, or start the inference service with --chat-template FILE (ORTSERVE_CHAT_TEMPLATE)"
)


class ChatTemplateError(ValueError):
    """A chat template file given to the service cannot be read or is not a valid Jinja template."""


def _gpt2_unicode_to_byte() -> dict[str, int]:
    """Inverse of GPT-2's bytes_to_unicode: printable stand-in character → raw byte."""
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]  # "!".."~", "¡".."¬", "®".."ÿ"
    mapping = {chr(b): b for b in printable}
    n = 0
    for b in range(256):
        if b not in printable:
            mapping[chr(256 + n)] = b
            n += 1
    return mapping


_UNICODE_TO_BYTE = _gpt2_unicode_to_byte()


def _special_text(value: Any) -> str | None:
    # tokenizer_config.json stores special tokens either as strings or as {"content": ..., ...} objects.
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _eos_ids_from(path: Path, *keys: str) -> list[int]:
    if not path.is_file():
        return []
    node: Any = json.loads(path.read_text(encoding="utf-8"))
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    if isinstance(node, int):
        return [node]
    return [int(i) for i in node] if isinstance(node, list) else []


def _pick_template(value: Any) -> str | None:
    # Newer HF configs may hold a list of named templates; "default" is the chat one.
    if isinstance(value, list):
        named = {t.get("name"): t.get("template") for t in value if isinstance(t, dict)}
        value = named.get("default")
    return value if isinstance(value, str) else None


def _tojson(
    x: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: Any = None,
    sort_keys: bool = False,
) -> str:
    # Same as transformers: unlike jinja's built-in tojson, no HTML escaping.
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


@dataclass(slots=True)
class _ByteDecoding:
    """How a vocabulary string maps to raw bytes."""

    byte_level: bool  # GPT-2 alphabet (ByteLevel decoder)
    byte_fallback: bool  # SentencePiece "<0xAB>" tokens


class Tokenizer:
    """Text ⇄ token ids for one model, plus its chat template. Thread-safe for concurrent encode/decode."""

    def __init__(
        self,
        tokenizer: HFTokenizer,
        config: dict[str, Any],
        chat_template: str | None = None,
        extra_eos_token_ids: Sequence[int] = (),
    ) -> None:
        self._tk = tokenizer
        self._specials = {name: _special_text(config.get(name)) for name in _SPECIAL_NAMES}
        self._chat_template = (
            chat_template if chat_template is not None else _pick_template(config.get("chat_template"))
        )
        self._compiled: jinja2.Template | None = None
        self._special_ids = frozenset(i for i, t in tokenizer.get_added_tokens_decoder().items() if t.special)
        self._bytes_cache: dict[int, bytes] = {}
        self._decoding = _byte_decoding(tokenizer)

        eos: list[int] = []
        eos_text = self._specials["eos_token"]
        if eos_text is not None and (i := tokenizer.token_to_id(eos_text)) is not None:
            eos.append(i)
        eos.extend(extra_eos_token_ids)
        self.eos_token_ids: tuple[int, ...] = tuple(dict.fromkeys(eos))
        bos_text = self._specials["bos_token"]
        self.bos_token_id: int | None = tokenizer.token_to_id(bos_text) if bos_text is not None else None

    @classmethod
    def from_dir(cls, path: Path | str, chat_template: Path | None = None) -> Tokenizer:
        """Load from a model folder holding tokenizer.json (+ tokenizer_config.json).

        `chat_template`: a Jinja file that replaces the folder's template (`--chat-template`); it is read and
        compiled here, so a bad one stops the service at start (ChatTemplateError), not at the first chat request.
        """
        path = Path(path)
        tokenizer_file = path / "tokenizer.json"
        if not tokenizer_file.is_file():
            raise FileNotFoundError(f"no tokenizer.json in {path}")
        config_file = path / "tokenizer_config.json"
        config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
        template_file = path / "chat_template.jinja"
        if chat_template is not None:
            template: str | None = _read_template(chat_template)
        else:
            template = template_file.read_text(encoding="utf-8") if template_file.is_file() else None
        extra_eos = [
            *_eos_ids_from(path / "genai_config.json", "model", "eos_token_id"),
            *_eos_ids_from(path / "generation_config.json", "eos_token_id"),
        ]
        tokenizer = cls(HFTokenizer.from_file(str(tokenizer_file)), config, template, extra_eos)
        if chat_template is not None:
            try:
                tokenizer._template()
            except jinja2.TemplateSyntaxError as e:
                raise ChatTemplateError(f"chat template {chat_template}: line {e.lineno}: {e.message}") from e
        return tokenizer

    @property
    def vocab_size(self) -> int:
        return self._tk.get_vocab_size(with_added_tokens=True)

    @property
    def chat_template(self) -> str | None:
        return self._chat_template

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Token ids of `text`; special tokens written in the text map to their ids."""
        return self._tk.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return self._tk.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def id_to_token(self, token_id: int) -> str:
        """The vocabulary string of `token_id` ("" for ids past the tokenizer's vocabulary)."""
        return self._tk.id_to_token(token_id) or ""

    def is_special(self, token_id: int) -> bool:
        return token_id in self._special_ids

    def token_bytes(self, token_id: int) -> bytes:
        """Raw UTF-8 bytes that `token_id` stands for (may be part of a character)."""
        cached = self._bytes_cache.get(token_id)
        if cached is None:
            cached = self._bytes_cache[token_id] = self._token_bytes(token_id)
        return cached

    def _token_bytes(self, token_id: int) -> bytes:
        token = self._tk.id_to_token(token_id)
        if token is None:
            return b""
        if token_id in self._special_ids:
            return token.encode("utf-8")
        if self._decoding.byte_level:
            if all(c in _UNICODE_TO_BYTE for c in token):
                return bytes(_UNICODE_TO_BYTE[c] for c in token)
            return token.encode("utf-8")  # an added non-special token, stored as plain text
        is_byte_token = len(token) == 6 and token.startswith("<0x") and token.endswith(">")
        if self._decoding.byte_fallback and is_byte_token:
            return bytes([int(token[3:5], 16)])
        return token.replace("▁", " ").encode("utf-8")  # SentencePiece's word-boundary marker

    def apply_chat_template(
        self, messages: Sequence[ChatMessage], add_generation_prompt: bool = True, tools: Sequence[Tool] = ()
    ) -> str:
        """Render messages the way transformers' `apply_chat_template(tokenize=False)` does.

        A template that mentions `tools` gets them (and the messages' calls and results) the transformers way; for
        one that ignores tools (SmolLM2's, Gemma 3's) the service writes them in: engine/tool_calls.py.
        """
        try:
            template = self._template()
            source = self._chat_template or ""
            # OpenAI's "developer" role is the system role for templates that do not know it (ChatML and most others).
            knows_developer = "developer" in source
            extra: dict[str, Any] = {}
            if "tools" in source:
                extra["tools"] = tool_specs(tools) if tools else None
            else:
                messages = with_tool_prompt(messages, tools)
            rendered = template.render(
                messages=[_message_dict(m, knows_developer) for m in messages],
                add_generation_prompt=add_generation_prompt,
                **{name: text or "" for name, text in self._specials.items()},
                **extra,
            )
        except jinja2.TemplateError as exc:
            raise InvalidRequestError(f"chat template error: {exc}", param="messages") from exc
        return rendered

    def _template(self) -> jinja2.Template:
        if self._compiled is None:
            if self._chat_template is None:
                raise InvalidRequestError(_NO_TEMPLATE, param="messages")
            # Same environment as transformers, so templates written for HF render identically.
            env = ImmutableSandboxedEnvironment(
                trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
            )
            env.filters["tojson"] = _tojson
            env.globals["raise_exception"] = _raise_exception
            env.globals["strftime_now"] = _strftime_now
            self._compiled = env.from_string(self._chat_template)
        return self._compiled


def _read_template(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise ChatTemplateError(f"chat template {file}: cannot be read: {reason}") from e


def _message_dict(message: ChatMessage, knows_developer: bool) -> dict[str, Any]:
    role = "system" if message.role == "developer" and not knows_developer else message.role
    d: dict[str, Any] = {"role": role, "content": message.content}
    if message.name:
        d["name"] = message.name
    if message.tool_calls:
        d["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": _arguments(c.arguments)}}
            for c in message.tool_calls
        ]
    if message.tool_call_id:
        d["tool_call_id"] = message.tool_call_id
    return d


def _arguments(text: str) -> Any:
    """Arguments as transformers passes them to templates: the parsed object (its text when it does not parse)."""
    try:
        return json.loads(text) if text else {}
    except ValueError:
        return text


def _byte_decoding(tokenizer: HFTokenizer) -> _ByteDecoding:
    decoder = json.loads(tokenizer.decoder.__getstate__()) if tokenizer.decoder is not None else {}
    parts = decoder.get("decoders", []) if decoder.get("type") == "Sequence" else [decoder]
    types = {p.get("type") for p in parts if isinstance(p, dict)}
    return _ByteDecoding(
        byte_level="ByteLevel" in types, byte_fallback=bool(getattr(tokenizer.model, "byte_fallback", False))
    )
