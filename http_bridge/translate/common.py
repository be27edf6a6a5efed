"""Translation shared by chat and text completions (pure, no I/O).

Request side: the GenerateRequest fields both endpoints set the same way (sampling, stopping, n). Response side: the
one dispatch over Generate responses, streamed (`StreamTranslator`) or accumulated per choice (`accumulate`); each
endpoint supplies a `ResponseBuilder` that makes its own OpenAI objects. Choice indexes are global over prompts:
prompt i, choice j of that prompt → index i * n + j (chat has one prompt).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel

from http_bridge.schemas.common import SamplingRequest, Usage
from http_bridge.translate.constraints import to_constraint
from inference_service.api.v1 import generation_pb2 as pb

_FINISH_REASONS: dict[int, str] = {
    pb.FINISH_REASON_EOS: "stop",
    pb.FINISH_REASON_STOP_SEQUENCE: "stop",
    pb.FINISH_REASON_STOP_TOKEN: "stop",
    pb.FINISH_REASON_MAX_TOKENS: "length",
    pb.FINISH_REASON_CONTEXT_LENGTH: "length",
    # Aborted by someone else (Abort RPC / shutdown); vLLM reports this as "abort".
    pb.FINISH_REASON_CANCELLED: "abort",
    pb.FINISH_REASON_TOOL_CALLS: "tool_calls",
}
UINT64_MASK = 2**64 - 1

Indexed = tuple[int, pb.GenerateResponse]  # (prompt index = stream index, response)
ChunkT = TypeVar("ChunkT", bound=BaseModel, covariant=True)
FinalT = TypeVar("FinalT", bound=BaseModel, covariant=True)


def sampling_params(body: SamplingRequest) -> pb.SamplingParams:
    """The sampling fields shared by chat and text completions; proto3 optionals are set only when given."""
    sampling = pb.SamplingParams()
    for name in ("temperature", "top_p", "min_p", "frequency_penalty", "presence_penalty", "repetition_penalty"):
        value = getattr(body, name)
        if value is not None:
            setattr(sampling, name, value)
    if body.top_k is not None:
        sampling.top_k = max(body.top_k, 0)  # vLLM's -1 means disabled, like 0 here
    if body.seed is not None:
        sampling.seed = body.seed & UINT64_MASK  # OpenAI seeds are int64; the contract is uint64
    if body.logit_bias:
        sampling.logit_bias.update(body.logit_bias)
    return sampling


def stopping_criteria(body: SamplingRequest, max_tokens: int | None) -> pb.StoppingCriteria:
    stopping = pb.StoppingCriteria(stop=[s for s in body.stop or () if s], ignore_eos=body.ignore_eos)
    if max_tokens is not None:
        stopping.max_tokens = max_tokens
    return stopping


def generate_request(
    body: SamplingRequest, request_id: str, *, max_tokens: int | None, output: pb.OutputOptions
) -> pb.GenerateRequest:
    """A GenerateRequest with everything but the input; `max_tokens` and `output` are read differently per endpoint."""
    request = pb.GenerateRequest(
        request_id=request_id,
        model=body.model,
        sampling=sampling_params(body),
        stopping=stopping_criteria(body, max_tokens),
        output=output,
        n=body.n,
    )
    constraint = to_constraint(body)
    if constraint is not None:
        request.constraint.CopyFrom(constraint)
    return request


def finish_reason(reason: int) -> str:
    return _FINISH_REASONS.get(reason, "stop")


@dataclass(frozen=True, slots=True)
class CompletionMeta:
    """Fields shared by every object of one response."""

    id: str
    created: int
    model: str
    system_fingerprint: str
    logprobs: bool = False

    def header(self) -> dict[str, Any]:
        """The fields every response object of the request carries."""
        return {
            "id": self.id,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": self.system_fingerprint,
        }


@dataclass(slots=True)
class UsageTotals:
    """Usage over prompts × n choices: each prompt's tokens once (its n choices share them), completions summed."""

    prompt_tokens: list[int]
    completion_tokens: int = 0

    @classmethod
    def for_prompts(cls, count: int) -> UsageTotals:
        return cls([0] * count)

    def add(self, prompt_index: int, usage: pb.Usage) -> None:
        self.prompt_tokens[prompt_index] = max(self.prompt_tokens[prompt_index], usage.prompt_tokens)
        self.completion_tokens += usage.completion_tokens

    def to_usage(self) -> Usage:
        prompt = sum(self.prompt_tokens)
        return Usage(
            prompt_tokens=prompt, completion_tokens=self.completion_tokens, total_tokens=prompt + self.completion_tokens
        )


@dataclass(slots=True)
class CallState:
    """One tool call of a non-streamed choice, accumulated from its pieces."""

    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass(slots=True)
class ChoiceState:
    """One choice of a non-streamed response, accumulated."""

    text: list[str] = field(default_factory=list)
    logprobs: list[pb.TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None
    calls: dict[int, CallState] = field(default_factory=dict)  # tool calls by their index

    def add(self, chunk: pb.TokenChunk) -> None:
        self.text.append(chunk.text)
        self.logprobs.extend(chunk.logprobs)
        for delta in chunk.tool_calls:
            call = self.calls.setdefault(delta.index, CallState())
            call.id = delta.id or call.id
            call.name = delta.name or call.name
            call.arguments.append(delta.arguments)

    def tool_calls(self) -> list[CallState]:
        return [self.calls[index] for index in sorted(self.calls)]


class ResponseBuilder(Protocol[ChunkT, FinalT]):
    """What an endpoint makes of the shared pieces: its stream chunks and its whole (non-streamed) object."""

    def opening(self, choices: int) -> Sequence[ChunkT]:
        """Chunks sent before any output (chat announces the assistant role of each choice)."""
        ...

    def content(self, index: int, chunk: pb.TokenChunk) -> ChunkT: ...

    def finish(self, index: int, reason: str) -> ChunkT: ...

    def usage(self, usage: Usage) -> ChunkT:
        """The last chunk when stream_options.include_usage is set: no choices, only usage."""
        ...

    def final(self, choices: Sequence[ChoiceState], usage: Usage) -> FinalT: ...


@dataclass(slots=True)
class StreamTranslator(Generic[ChunkT, FinalT]):
    """Streaming: one (prompt index, GenerateResponse) → one chunk (None when there is nothing); counts usage."""

    builder: ResponseBuilder[ChunkT, FinalT]
    n: int
    usage: UsageTotals

    def opening(self) -> Sequence[ChunkT]:
        return self.builder.opening(len(self.usage.prompt_tokens) * self.n)

    def chunk(self, prompt_index: int, response: pb.GenerateResponse) -> ChunkT | None:
        index = prompt_index * self.n + response.index
        kind = response.WhichOneof("kind")
        if kind == "chunk":
            if not response.chunk.text and not response.chunk.logprobs and not response.chunk.tool_calls:
                return None  # an empty held-back chunk
            return self.builder.content(index, response.chunk)
        if kind == "complete":
            self.usage.add(prompt_index, response.complete.usage)
            return self.builder.finish(index, finish_reason(response.complete.finish_reason))
        return None

    def usage_chunk(self) -> ChunkT:
        return self.builder.usage(self.usage.to_usage())


def accumulate(builder: ResponseBuilder[Any, FinalT], responses: Iterable[Indexed], prompts: int, n: int) -> FinalT:
    """All (prompt index, response) pairs of a non-streamed request → one object with prompts × n choices."""
    choices = [ChoiceState() for _ in range(prompts * n)]
    usage = UsageTotals.for_prompts(prompts)
    for prompt_index, response in responses:
        if response.index >= n:
            raise ValueError(f"choice index {response.index} out of range for n={n}")
        choice = choices[prompt_index * n + response.index]
        kind = response.WhichOneof("kind")
        if kind == "chunk":
            choice.add(response.chunk)
        elif kind == "complete":
            choice.finish_reason = finish_reason(response.complete.finish_reason)
            usage.add(prompt_index, response.complete.usage)
    return builder.final(choices, usage.to_usage())
