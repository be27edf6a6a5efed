"""Legacy text completions: one GenerateRequest per prompt; the text_completion objects built from the shared
pieces (translate/common.py does the dispatch, the global choice indexes and the per-choice accumulation)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from http_bridge.schemas.common import Usage
from http_bridge.schemas.completions import CompletionChoice, CompletionLogprobs, CompletionRequest, TextCompletion
from http_bridge.translate.common import ChoiceState, CompletionMeta, generate_request
from inference_service.api.v1 import generation_pb2 as pb


def to_generate_requests(body: CompletionRequest, request_id: str) -> list[pb.GenerateRequest]:
    """One GenerateRequest per prompt; request ids get a `-i` suffix when there are several prompts."""
    top = body.logprobs if body.logprobs is not None else 0
    output = pb.OutputOptions(logprobs=body.logprobs is not None, top_logprobs=top)
    prompts = body.prompts()
    requests = []
    for i, prompt in enumerate(prompts):
        prompt_id = request_id if len(prompts) == 1 else f"{request_id}-{i}"
        request = generate_request(body, prompt_id, max_tokens=body.max_tokens, output=output)
        if isinstance(prompt, str):
            request.prompt = prompt
        else:
            request.token_ids.ids.extend(prompt)
        requests.append(request)
    return requests


def legacy_logprobs(items: Sequence[pb.TokenLogprob], offset: int) -> CompletionLogprobs:
    """Proto logprobs → the legacy shape; `offset` is the length of the text generated before these tokens."""
    tokens, token_logprobs, tops, offsets = [], [], [], []
    for item in items:
        tokens.append(item.token)
        token_logprobs.append(item.logprob)
        top = {alt.token: alt.logprob for alt in item.top_logprobs}
        top.setdefault(item.token, item.logprob)  # the sampled token is always included, as OpenAI does
        tops.append(top)
        offsets.append(offset)
        offset += len(item.token)
    return CompletionLogprobs(tokens=tokens, token_logprobs=token_logprobs, top_logprobs=tops, text_offset=offsets)


@dataclass(slots=True)
class TextCompletionBuilder:
    """text_completion objects: each streamed chunk is one, and so is the whole response."""

    meta: CompletionMeta
    offsets: dict[int, int] = field(default_factory=dict)  # streaming: choice index → characters generated so far

    def _completion(self, choices: list[CompletionChoice], usage: Usage | None = None) -> TextCompletion:
        return TextCompletion(**self.meta.header(), choices=choices, usage=usage)

    def opening(self, choices: int) -> list[TextCompletion]:
        return []

    def content(self, index: int, chunk: pb.TokenChunk) -> TextCompletion:
        logprobs = None
        if self.meta.logprobs:
            logprobs = legacy_logprobs(chunk.logprobs, self.offsets.get(index, 0))
            self.offsets[index] = self.offsets.get(index, 0) + sum(len(t) for t in logprobs.tokens)
        return self._completion([CompletionChoice(index=index, text=chunk.text, logprobs=logprobs, finish_reason=None)])

    def finish(self, index: int, reason: str) -> TextCompletion:
        return self._completion([CompletionChoice(index=index, text="", finish_reason=reason)])

    def usage(self, usage: Usage) -> TextCompletion:
        return self._completion([], usage)

    def final(self, choices: Sequence[ChoiceState], usage: Usage) -> TextCompletion:
        return self._completion(
            [
                CompletionChoice(
                    index=i,
                    text="".join(choice.text),
                    logprobs=legacy_logprobs(choice.logprobs, 0) if self.meta.logprobs else None,
                    finish_reason=choice.finish_reason,
                )
                for i, choice in enumerate(choices)
            ],
            usage,
        )
