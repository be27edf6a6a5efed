"""Pydantic models of OpenAI's legacy text completions (`/v1/completions`): the request beyond the shared fields
and the text_completion object (also each stream chunk)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from http_bridge.schemas.common import UINT32_MAX, SamplingRequest, Usage

MAX_PROMPTS = 128
DEFAULT_MAX_TOKENS = 16  # OpenAI's default for text completions
PROMPT_SHAPES = "a non-empty string, a list of them, a list of token ids, or a list of token id lists"


def _is_token_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= UINT32_MAX


def _is_token_list(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(_is_token_id(t) for t in value)


class CompletionRequest(SamplingRequest):
    # One Generate call per prompt; a list of ints is one tokenized prompt.
    prompt: str | list[str] | list[int] | list[list[int]]
    # null means the default, as with OpenAI.
    max_tokens: int | None = Field(default=DEFAULT_MAX_TOKENS, ge=1, le=UINT32_MAX)
    # Legacy logprobs: the sampled token's logprob plus this many alternatives per position.
    logprobs: int | None = Field(default=None, ge=0, le=5, strict=True)
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = Field(default=None, ge=1, le=128)

    @field_validator("prompt", mode="before")
    @classmethod
    def _check_prompt(cls, value: object) -> object:
        if isinstance(value, str) and value:
            return value
        if isinstance(value, list) and 0 < len(value) <= MAX_PROMPTS:
            if all(isinstance(v, str) and v for v in value) or all(_is_token_list(v) for v in value):
                return value
            if _is_token_list(value):
                return value
        raise PydanticCustomError(
            "invalid_value",
            "prompt must be {shapes} (at most {limit} prompts)",
            {"shapes": PROMPT_SHAPES, "limit": MAX_PROMPTS},
        )

    @field_validator("echo")
    @classmethod
    def _no_echo(cls, value: bool) -> bool:
        if value:
            raise PydanticCustomError("unsupported_value", "echo=true is not supported by this server")
        return value

    @field_validator("suffix")
    @classmethod
    def _no_suffix(cls, value: str | None) -> str | None:
        if value:
            raise PydanticCustomError("unsupported_parameter", "'suffix' (insertion) is not supported by this server")
        return value

    @field_validator("best_of")
    @classmethod
    def _best_of_is_n(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and value != info.data.get("n", 1):
            raise PydanticCustomError(
                "unsupported_value", "best_of must equal n (server-side ranking is not supported)"
            )
        return value

    @field_validator("max_tokens", mode="before")
    @classmethod
    def _null_is_default(cls, value: object) -> object:
        return DEFAULT_MAX_TOKENS if value is None else value

    def prompts(self) -> list[str | list[int]]:
        """The prompts, one per Generate call."""
        prompt = self.prompt
        if isinstance(prompt, str):
            return [prompt]
        if prompt and all(isinstance(p, int) for p in prompt):
            return [[int(p) for p in prompt if isinstance(p, int)]]
        return [p for p in prompt if isinstance(p, str | list)]


class CompletionLogprobs(BaseModel):
    tokens: list[str]
    token_logprobs: list[float]
    # Per position: the `logprobs` most likely tokens and the sampled one, token → logprob.
    top_logprobs: list[dict[str, float]]
    # Character offset of each token in the generated text.
    text_offset: list[int]


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: CompletionLogprobs | None = None
    finish_reason: str | None


class TextCompletion(BaseModel):
    """A whole text completion, or one streamed chunk of it (same object, as with OpenAI)."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    system_fingerprint: str
    choices: list[CompletionChoice]
    usage: Usage | None = None
