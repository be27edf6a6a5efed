"""Pure translation between the OpenAI chat schema and the gRPC contract (no I/O)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from http_bridge.schemas import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatMessageOut,
    Choice,
    ChoiceLogprobs,
    ChunkChoice,
    Delta,
    SamplingRequest,
    TokenLogprob,
    TopLogprob,
    Usage,
)
from inference_service.api.v1 import generation_pb2 as pb

_FINISH_REASONS: dict[int, str] = {
    pb.FINISH_REASON_EOS: "stop",
    pb.FINISH_REASON_STOP_SEQUENCE: "stop",
    pb.FINISH_REASON_STOP_TOKEN: "stop",
    pb.FINISH_REASON_MAX_TOKENS: "length",
    pb.FINISH_REASON_CONTEXT_LENGTH: "length",
    # Aborted by someone else (Abort RPC / shutdown); vLLM reports this as "abort".
    pb.FINISH_REASON_CANCELLED: "abort",
}
UINT64_MASK = 2**64 - 1


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


def to_generate_request(body: ChatCompletionRequest, request_id: str) -> pb.GenerateRequest:
    """OpenAI chat request → GenerateRequest."""
    chat = pb.ChatInput(
        messages=[pb.ChatMessage(role=m.role, content=m.text(), name=m.name or "") for m in body.messages]
    )
    max_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
    output = pb.OutputOptions(logprobs=body.logprobs, top_logprobs=body.top_logprobs or 0)
    return pb.GenerateRequest(
        request_id=request_id,
        model=body.model,
        chat=chat,
        sampling=sampling_params(body),
        stopping=stopping_criteria(body, max_tokens),
        output=output,
        n=body.n,
    )


def finish_reason(reason: int) -> str:
    return _FINISH_REASONS.get(reason, "stop")


def _bytes_of(raw: bytes, token: str) -> list[int]:
    return list(raw) if raw else list(token.encode())


def to_logprobs(items: Sequence[pb.TokenLogprob]) -> list[TokenLogprob]:
    """Proto logprobs → OpenAI's `logprobs.content` entries."""
    return [
        TokenLogprob(
            token=item.token,
            logprob=item.logprob,
            bytes=_bytes_of(item.bytes, item.token),
            top_logprobs=[
                TopLogprob(token=top.token, logprob=top.logprob, bytes=_bytes_of(top.bytes, top.token))
                for top in item.top_logprobs
            ],
        )
        for item in items
    ]


@dataclass(slots=True)
class UsageTotals:
    """Usage over n choices: the prompt is counted once, completions are summed."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, usage: pb.Usage) -> None:
        self.prompt_tokens = max(self.prompt_tokens, usage.prompt_tokens)
        self.completion_tokens += usage.completion_tokens

    def to_usage(self) -> Usage:
        total = self.prompt_tokens + self.completion_tokens
        return Usage(prompt_tokens=self.prompt_tokens, completion_tokens=self.completion_tokens, total_tokens=total)


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


def _chunk(meta: CompletionMeta, choices: list[ChunkChoice], usage: Usage | None = None) -> ChatCompletionChunk:
    return ChatCompletionChunk(**meta.header(), choices=choices, usage=usage)


def role_chunks(meta: CompletionMeta, n: int) -> list[ChatCompletionChunk]:
    """The first chunk of each choice: the assistant role and empty content."""
    return [_chunk(meta, [ChunkChoice(index=i, delta=Delta(role="assistant", content=""))]) for i in range(n)]


def to_chunk(meta: CompletionMeta, response: pb.GenerateResponse, usage: UsageTotals) -> ChatCompletionChunk | None:
    """One GenerateResponse → one chunk (None for an empty held-back chunk); adds completions to `usage`."""
    kind = response.WhichOneof("kind")
    if kind == "chunk":
        chunk = response.chunk
        if not chunk.text and not chunk.logprobs:
            return None
        logprobs = ChoiceLogprobs(content=to_logprobs(chunk.logprobs)) if meta.logprobs else None
        return _chunk(meta, [ChunkChoice(index=response.index, delta=Delta(content=chunk.text), logprobs=logprobs)])
    if kind == "complete":
        usage.add(response.complete.usage)
        reason = finish_reason(response.complete.finish_reason)
        return _chunk(meta, [ChunkChoice(index=response.index, delta=Delta(), finish_reason=reason)])
    return None


def usage_chunk(meta: CompletionMeta, usage: UsageTotals) -> ChatCompletionChunk:
    """The final chunk sent when stream_options.include_usage is set: no choices, only usage."""
    return _chunk(meta, [], usage.to_usage())


@dataclass(slots=True)
class _ChoiceState:
    text: list[str] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None


def to_completion(meta: CompletionMeta, responses: Iterable[pb.GenerateResponse], n: int) -> ChatCompletion:
    """A whole (non-streamed) Generate stream → one chat.completion with n choices."""
    states = [_ChoiceState() for _ in range(n)]
    usage = UsageTotals()
    for response in responses:
        if response.index >= n:
            raise ValueError(f"choice index {response.index} out of range for n={n}")
        state = states[response.index]
        kind = response.WhichOneof("kind")
        if kind == "chunk":
            state.text.append(response.chunk.text)
            state.logprobs.extend(to_logprobs(response.chunk.logprobs))
        elif kind == "complete":
            state.finish_reason = finish_reason(response.complete.finish_reason)
            usage.add(response.complete.usage)
    choices = [
        Choice(
            index=i,
            message=ChatMessageOut(content="".join(state.text)),
            logprobs=ChoiceLogprobs(content=state.logprobs) if meta.logprobs else None,
            finish_reason=state.finish_reason,
        )
        for i, state in enumerate(states)
    ]
    return ChatCompletion(**meta.header(), choices=choices, usage=usage.to_usage())
