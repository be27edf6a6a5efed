"""Typed values that cross the engine boundary (front ⇄ core ⇄ scheduler ⇄ sampler)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


class FinishReason(enum.Enum):
    EOS = "eos"
    STOP_SEQUENCE = "stop_sequence"
    STOP_TOKEN = "stop_token"
    MAX_TOKENS = "max_tokens"
    CONTEXT_LENGTH = "context_length"
    CANCELLED = "cancelled"
    TOOL_CALLS = "tool_calls"  # EOS after one or more complete tool calls


@dataclass(slots=True, frozen=True)
class ToolCall:
    """A complete call: in the conversation (an assistant's earlier call) or assembled from the output's pieces."""

    id: str
    name: str
    arguments: str  # a JSON object in text


@dataclass(slots=True, frozen=True)
class ToolCallDelta:
    """A piece of a call in the output: the first has id and name (no arguments), later ones argument text only."""

    index: int
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass(slots=True, frozen=True)
class Tool:
    name: str
    description: str = ""
    parameters: dict[str, Any] | None = None  # JSON Schema of the arguments; None = any object


class ToolChoice(enum.Enum):
    AUTO = "auto"  # text or calls; a call, once started, is constrained
    NONE = "none"  # text only: tools are not rendered
    REQUIRED = "required"  # one or more calls
    FUNCTION = "function"  # exactly one call of Tools.function


@dataclass(slots=True, frozen=True)
class Tools:
    """The functions a chat request offers and how the model may use them."""

    tools: tuple[Tool, ...]
    choice: ToolChoice = ToolChoice.AUTO
    function: str = ""  # the function a FUNCTION choice names
    parallel: bool = True

    @property
    def callable(self) -> bool:
        return bool(self.tools) and self.choice is not ToolChoice.NONE


@dataclass(slots=True, frozen=True)
class ChatMessage:
    role: str
    content: str
    name: str = ""
    tool_calls: tuple[ToolCall, ...] = ()  # assistant messages
    tool_call_id: str = ""  # tool messages


class ConstraintKind(enum.Enum):
    JSON_SCHEMA = "json_schema"
    JSON_OBJECT = "json_object"
    REGEX = "regex"
    LARK = "lark"
    CHOICE = "choice"


@dataclass(slots=True, frozen=True)
class Constraint:
    """What the output must match (compiled by engine/constraints.py). `source`: the schema (JSON text), regex,
    grammar or, for CHOICE, the choices as a JSON list; empty for JSON_OBJECT."""

    kind: ConstraintKind
    source: str = ""
    whitespace_flexible: bool = False


@dataclass(slots=True, frozen=True)
class SamplingParams:
    """Per-request sampling. temperature 0 = greedy; top_k 0 = off; top_p 1 = off; min_p 0 = off."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    repetition_penalty: float = 1.0
    seed: int | None = None
    logit_bias: dict[int, float] = field(default_factory=dict)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass(slots=True, frozen=True)
class StoppingParams:
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False
    include_stop_str_in_output: bool = False


@dataclass(slots=True, frozen=True)
class OutputParams:
    logprobs: bool = False
    top_logprobs: int = 0


@dataclass(slots=True, frozen=True)
class GenerationParams:
    """What a caller asks of a generation, apart from the prompt and the request id."""

    sampling: SamplingParams = field(default_factory=SamplingParams)
    stopping: StoppingParams = field(default_factory=StoppingParams)
    output: OutputParams = field(default_factory=OutputParams)
    n: int = 1
    constraint: Constraint | None = None
    tool_calls: bool = False  # the constraint is a tool-call grammar: calls in the output are parsed


class GrammarMatcher(Protocol):
    """One choice's position in its grammar (engine/constraints.py's Matcher, a script in the unit tests)."""

    def allowed(self) -> np.ndarray: ...  # bool [vocab]: the tokens that may come next; RuntimeError when in error

    def consume(self, token: int) -> None: ...

    @property
    def stopped(self) -> bool: ...  # the output is complete: nothing but EOS may follow


class CompiledGrammar(Protocol):
    """A compiled constraint (engine/constraints.py's Grammar); each choice starts its own matcher."""

    def matcher(self) -> GrammarMatcher: ...


@dataclass(slots=True)
class GenerationRequest:
    """One request as the engine sees it: prompt already tokenized, n choices."""

    request_id: str
    prompt_token_ids: list[int]
    sampling: SamplingParams = field(default_factory=SamplingParams)
    stopping: StoppingParams = field(default_factory=StoppingParams)
    output: OutputParams = field(default_factory=OutputParams)
    n: int = 1
    arrival_time: float = 0.0
    grammar: CompiledGrammar | None = None  # compiled constraint: each choice gets its own matcher
    tool_calls: bool = False  # parse the output's tool calls (chat with callable tools)


@dataclass(slots=True, frozen=True)
class TopLogprob:
    token_id: int
    token: str
    logprob: float
    bytes: bytes


@dataclass(slots=True, frozen=True)
class TokenLogprob:
    token_id: int
    token: str
    logprob: float
    bytes: bytes
    top: tuple[TopLogprob, ...] = ()


@dataclass(slots=True, frozen=True)
class Timing:
    queue_seconds: float
    time_to_first_token_seconds: float
    total_seconds: float


@dataclass(slots=True, frozen=True)
class ChoiceOutput:
    """What one engine step produced for one choice of one request.

    `text` is whole UTF-8 (possibly empty while text is held back); `finish_reason` is set on the last output
    of a choice, together with usage and timing.
    """

    request_id: str
    index: int
    text: str
    token_ids: tuple[int, ...] = ()
    logprobs: tuple[TokenLogprob, ...] = ()
    finish_reason: FinishReason | None = None
    matched_stop: str = ""
    tool_calls: tuple[ToolCallDelta, ...] = ()
    prompt_tokens: int = 0
    completion_tokens: int = 0
    timing: Timing | None = None


@dataclass(slots=True, frozen=True)
class Failure:
    """A request the engine failed (already taken out of it). `error`: an engine/errors.py error for the caller."""

    request_id: str
    error: Exception


@dataclass(slots=True)
class StepResult:
    """What one step reports: the choices' outputs and the requests that failed. The engine's only way out."""

    outputs: list[ChoiceOutput]
    failures: list[Failure]
    error: BaseException | None = None  # an exception that escaped the passes; the requests it failed are failures


@dataclass(slots=True, frozen=True)
class ServerLoad:
    """The snapshot the engine thread publishes before and after each step; other threads read only this."""

    running_sequences: int
    waiting_requests: int
    kv_tokens_used: int
    kv_tokens_total: int
    max_running_sequences: int
    prefix_cache_hit_tokens: int  # prompt tokens restored from the prefix cache since start
    preemptions: int  # since start
    draft_tokens: int  # speculative decoding: drafted tokens verified since start
    accepted_draft_tokens: int  # of them, accepted
    has_work: bool  # sequences waiting or running when published
    published_at: float  # time.monotonic()

    def stalled(self, now: float, limit: float) -> bool:
        """Work was pending and no snapshot came for `limit` seconds. A stuck loop cannot flag itself, so the
        reader decides from the snapshot's age."""
        return self.has_work and now - self.published_at >= limit
