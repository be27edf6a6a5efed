"""Pure translation for legacy text completions: one GenerateRequest per prompt, responses → text_completion.

Choice indexes are global: prompt i, choice j of that prompt → index i * n + j.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from http_bridge.completion_schemas import CompletionChoice, CompletionLogprobs, CompletionRequest, TextCompletion
from http_bridge.schemas import Usage
from http_bridge.translate import CompletionMeta, UsageTotals, finish_reason, sampling_params, stopping_criteria
from inference_service.api.v1 import generation_pb2 as pb


def to_generate_requests(body: CompletionRequest, request_id: str) -> list[pb.GenerateRequest]:
    """One GenerateRequest per prompt; request ids get a `-i` suffix when there are several prompts."""
    top = body.logprobs if body.logprobs is not None else 0
    output = pb.OutputOptions(logprobs=body.logprobs is not None, top_logprobs=top)
    prompts = body.prompts()
    requests = []
    for i, prompt in enumerate(prompts):
        request = pb.GenerateRequest(
            request_id=request_id if len(prompts) == 1 else f"{request_id}-{i}",
            model=body.model,
            sampling=sampling_params(body),
            stopping=stopping_criteria(body, body.max_tokens),
            output=output,
            n=body.n,
        )
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
class CompletionUsage:
    """Usage over prompts: each prompt's tokens once, all completions summed."""

    per_prompt: list[UsageTotals] = field(default_factory=list)

    @classmethod
    def for_prompts(cls, count: int) -> CompletionUsage:
        return cls([UsageTotals() for _ in range(count)])

    def to_usage(self) -> Usage:
        prompt = sum(u.prompt_tokens for u in self.per_prompt)
        completion = sum(u.completion_tokens for u in self.per_prompt)
        return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def _completion(meta: CompletionMeta, choices: list[CompletionChoice], usage: Usage | None) -> TextCompletion:
    return TextCompletion(**meta.header(), choices=choices, usage=usage)


@dataclass(slots=True)
class ChunkTranslator:
    """Streaming: one GenerateResponse of prompt i → one text_completion chunk (None when there is nothing)."""

    meta: CompletionMeta
    n: int
    usage: CompletionUsage
    offsets: dict[int, int] = field(default_factory=dict)  # choice index → characters generated so far

    def chunk(self, prompt_index: int, response: pb.GenerateResponse) -> TextCompletion | None:
        index = prompt_index * self.n + response.index
        kind = response.WhichOneof("kind")
        if kind == "chunk":
            chunk = response.chunk
            if not chunk.text and not chunk.logprobs:
                return None
            logprobs = None
            if self.meta.logprobs:
                logprobs = legacy_logprobs(chunk.logprobs, self.offsets.get(index, 0))
                self.offsets[index] = self.offsets.get(index, 0) + sum(len(t) for t in logprobs.tokens)
            choice = CompletionChoice(index=index, text=chunk.text, logprobs=logprobs, finish_reason=None)
            return _completion(self.meta, [choice], None)
        if kind == "complete":
            self.usage.per_prompt[prompt_index].add(response.complete.usage)
            reason = finish_reason(response.complete.finish_reason)
            return _completion(self.meta, [CompletionChoice(index=index, text="", finish_reason=reason)], None)
        return None

    def usage_chunk(self) -> TextCompletion:
        return _completion(self.meta, [], self.usage.to_usage())


def to_text_completion(
    meta: CompletionMeta, responses: Iterable[tuple[int, pb.GenerateResponse]], prompts: int, n: int
) -> TextCompletion:
    """All (prompt index, response) pairs of a non-streamed request → one text_completion."""
    texts: list[list[str]] = [[] for _ in range(prompts * n)]
    items: list[list[pb.TokenLogprob]] = [[] for _ in range(prompts * n)]
    reasons: list[str | None] = [None] * (prompts * n)
    usage = CompletionUsage.for_prompts(prompts)
    for prompt_index, response in responses:
        if response.index >= n:
            raise ValueError(f"choice index {response.index} out of range for n={n}")
        index = prompt_index * n + response.index
        kind = response.WhichOneof("kind")
        if kind == "chunk":
            texts[index].append(response.chunk.text)
            items[index].extend(response.chunk.logprobs)
        elif kind == "complete":
            reasons[index] = finish_reason(response.complete.finish_reason)
            usage.per_prompt[prompt_index].add(response.complete.usage)
    choices = [
        CompletionChoice(
            index=i,
            text="".join(texts[i]),
            logprobs=legacy_logprobs(items[i], 0) if meta.logprobs else None,
            finish_reason=reasons[i],
        )
        for i in range(prompts * n)
    ]
    return _completion(meta, choices, usage.to_usage())
