"""Chat completions: the request's messages and chat-only fields → GenerateRequest; the chat objects built from the
shared pieces (translate/common.py does the dispatch and the per-choice accumulation)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from http_bridge.schemas.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatMessageOut,
    Choice,
    ChoiceLogprobs,
    ChunkChoice,
    Delta,
    TokenLogprob,
    TopLogprob,
)
from http_bridge.schemas.common import Usage
from http_bridge.translate.common import ChoiceState, CompletionMeta, generate_request
from inference_service.api.v1 import generation_pb2 as pb


def to_generate_request(body: ChatCompletionRequest, request_id: str) -> pb.GenerateRequest:
    """OpenAI chat request → GenerateRequest."""
    max_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
    output = pb.OutputOptions(logprobs=body.logprobs, top_logprobs=body.top_logprobs or 0)
    request = generate_request(body, request_id, max_tokens=max_tokens, output=output)
    messages = [pb.ChatMessage(role=m.role, content=m.text(), name=m.name or "") for m in body.messages]
    request.chat.CopyFrom(pb.ChatInput(messages=messages))
    return request


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


@dataclass(frozen=True, slots=True)
class ChatBuilder:
    """chat.completion.chunk objects while streaming, one chat.completion otherwise."""

    meta: CompletionMeta

    def _chunk(self, choices: list[ChunkChoice], usage: Usage | None = None) -> ChatCompletionChunk:
        return ChatCompletionChunk(**self.meta.header(), choices=choices, usage=usage)

    def _logprobs(self, items: Sequence[pb.TokenLogprob]) -> ChoiceLogprobs | None:
        return ChoiceLogprobs(content=to_logprobs(items)) if self.meta.logprobs else None

    def opening(self, choices: int) -> list[ChatCompletionChunk]:
        """The first chunk of each choice: the assistant role and empty content."""
        return [self._chunk([ChunkChoice(index=i, delta=Delta(role="assistant", content=""))]) for i in range(choices)]

    def content(self, index: int, chunk: pb.TokenChunk) -> ChatCompletionChunk:
        delta = Delta(content=chunk.text)
        return self._chunk([ChunkChoice(index=index, delta=delta, logprobs=self._logprobs(chunk.logprobs))])

    def finish(self, index: int, reason: str) -> ChatCompletionChunk:
        return self._chunk([ChunkChoice(index=index, delta=Delta(), finish_reason=reason)])

    def usage(self, usage: Usage) -> ChatCompletionChunk:
        return self._chunk([], usage)

    def final(self, choices: Sequence[ChoiceState], usage: Usage) -> ChatCompletion:
        return ChatCompletion(
            **self.meta.header(),
            choices=[
                Choice(
                    index=i,
                    message=ChatMessageOut(content="".join(choice.text)),
                    logprobs=self._logprobs(choice.logprobs),
                    finish_reason=choice.finish_reason,
                )
                for i, choice in enumerate(choices)
            ],
            usage=usage,
        )
