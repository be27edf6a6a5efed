"""gRPC messages ⇄ engine types. Pure functions; range checks of gRPC input live here (the bridge checks too).

Emptiness of the prompt is the engine's to check (`AsyncEngine.render`): it sees what the input renders to.
"""

from __future__ import annotations

import math
import re
import uuid

from inference_service.api.v1 import generation_pb2 as pb
from inference_service.engine.async_engine import PromptInput
from inference_service.engine.errors import InvalidRequestError
from inference_service.engine.types import (
    ChatMessage,
    ChoiceOutput,
    FinishReason,
    GenerationParams,
    OutputParams,
    SamplingParams,
    StoppingParams,
)
from inference_service.models.folder import SearchDefaults

MAX_N = 128  # as OpenAI; choices beyond the free KV slots wait for one
MAX_STOPS = 16
MAX_TOP_LOGPROBS = 20
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
ROLES = frozenset({"system", "developer", "user", "assistant"})

FINISH_REASONS = {
    FinishReason.EOS: pb.FINISH_REASON_EOS,
    FinishReason.STOP_SEQUENCE: pb.FINISH_REASON_STOP_SEQUENCE,
    FinishReason.STOP_TOKEN: pb.FINISH_REASON_STOP_TOKEN,
    FinishReason.MAX_TOKENS: pb.FINISH_REASON_MAX_TOKENS,
    FinishReason.CONTEXT_LENGTH: pb.FINISH_REASON_CONTEXT_LENGTH,
    FinishReason.CANCELLED: pb.FINISH_REASON_CANCELLED,
}


def _check(ok: bool, param: str, message: str) -> None:
    if not ok:
        raise InvalidRequestError(message, param=param)


def _in_range(value: float, low: float, high: float, param: str) -> float:
    _check(math.isfinite(value) and low <= value <= high, param, f"{param} must be in [{low}, {high}], got {value}")
    return value


def prompt_input(req: pb.GenerateRequest | pb.TokenizeRequest) -> PromptInput:
    kind = req.WhichOneof("input")
    if kind == "chat":
        messages = []
        for i, m in enumerate(req.chat.messages):
            _check(m.role in ROLES, f"messages[{i}].role", f"unknown role {m.role!r}; expected one of {sorted(ROLES)}")
            messages.append(ChatMessage(m.role, m.content, m.name))
        add_prompt = req.chat.add_generation_prompt if req.chat.HasField("add_generation_prompt") else True
        return PromptInput(messages=tuple(messages), add_generation_prompt=add_prompt)
    if kind == "prompt":
        return PromptInput(text=req.prompt)
    if kind == "token_ids":
        return PromptInput(token_ids=tuple(req.token_ids.ids))
    raise InvalidRequestError("one of chat, prompt or token_ids is required", param="input")


def sampling_params(s: pb.SamplingParams, defaults: SearchDefaults) -> SamplingParams:
    def opt(name: str, default: float) -> float:
        return float(getattr(s, name)) if s.HasField(name) else default

    for token_id, bias in s.logit_bias.items():
        _in_range(bias, -100, 100, f"logit_bias[{token_id}]")
    return SamplingParams(
        temperature=_in_range(opt("temperature", defaults.temperature), 0, 100, "temperature"),
        top_p=_in_range(opt("top_p", defaults.top_p), 1e-9, 1, "top_p"),
        top_k=int(s.top_k) if s.HasField("top_k") else defaults.top_k,
        min_p=_in_range(opt("min_p", 0.0), 0, 1, "min_p"),
        frequency_penalty=_in_range(opt("frequency_penalty", 0.0), -2, 2, "frequency_penalty"),
        presence_penalty=_in_range(opt("presence_penalty", 0.0), -2, 2, "presence_penalty"),
        repetition_penalty=_in_range(opt("repetition_penalty", 1.0), 1e-3, 10, "repetition_penalty"),
        seed=int(s.seed) if s.HasField("seed") else None,
        logit_bias={int(k): float(v) for k, v in s.logit_bias.items()},
    )


def request_id(value: str) -> str:
    """The caller's id when it is safe to log and echo, a fresh one when empty (the only place ids are made)."""
    if not value:
        return uuid.uuid4().hex
    _check(
        REQUEST_ID.fullmatch(value) is not None,
        "request_id",
        "request_id must be 1-128 characters of letters, digits and ._:-",
    )
    return value


def generation_params(req: pb.GenerateRequest, defaults: SearchDefaults) -> GenerationParams:
    """What to generate; the prompt goes separately (`prompt_input`), as the engine renders and tokenizes it."""
    st = req.stopping
    _check(not st.HasField("max_tokens") or st.max_tokens >= 1, "max_tokens", "max_tokens must be at least 1")
    _check(len(st.stop) <= MAX_STOPS, "stop", f"at most {MAX_STOPS} stop strings are allowed")
    _check(all(st.stop), "stop", "stop strings must not be empty")
    _check(
        req.output.top_logprobs <= MAX_TOP_LOGPROBS, "top_logprobs", f"top_logprobs must be in [0, {MAX_TOP_LOGPROBS}]"
    )
    n = req.n or 1
    _check(n <= MAX_N, "n", f"n must be in [1, {MAX_N}]")
    return GenerationParams(
        sampling=sampling_params(req.sampling, defaults),
        stopping=StoppingParams(
            max_tokens=st.max_tokens if st.HasField("max_tokens") else None,
            stop=tuple(st.stop),
            stop_token_ids=tuple(st.stop_token_ids),
            ignore_eos=st.ignore_eos,
            include_stop_str_in_output=st.include_stop_str_in_output,
        ),
        output=OutputParams(
            logprobs=req.output.logprobs or req.output.top_logprobs > 0,
            top_logprobs=req.output.top_logprobs,
        ),
        n=n,
    )


def responses(out: ChoiceOutput, return_token_ids: bool) -> list[pb.GenerateResponse]:
    """One engine output → a chunk (when it carries anything) and, on the last one, a completion.

    Token ids go out only when the request's `OutputOptions.return_token_ids` asks: the engine always reports them.
    """
    items = []
    if out.text or out.logprobs or (return_token_ids and out.token_ids):
        chunk = pb.TokenChunk(text=out.text, token_ids=out.token_ids if return_token_ids else ())
        for lp in out.logprobs:
            chunk.logprobs.append(
                pb.TokenLogprob(
                    token_id=lp.token_id,
                    token=lp.token,
                    logprob=lp.logprob,
                    bytes=lp.bytes,
                    top_logprobs=[
                        pb.TopLogprob(token_id=t.token_id, token=t.token, logprob=t.logprob, bytes=t.bytes)
                        for t in lp.top
                    ],
                )
            )
        items.append(pb.GenerateResponse(request_id=out.request_id, index=out.index, chunk=chunk))
    if out.finish_reason is not None:
        complete = pb.GenerationComplete(
            finish_reason=FINISH_REASONS[out.finish_reason],
            matched_stop=out.matched_stop,
            usage=pb.Usage(prompt_tokens=out.prompt_tokens, completion_tokens=out.completion_tokens),
        )
        if out.timing is not None:
            complete.timing.CopyFrom(
                pb.Timing(
                    queue_seconds=out.timing.queue_seconds,
                    time_to_first_token_seconds=out.timing.time_to_first_token_seconds,
                    total_seconds=out.timing.total_seconds,
                )
            )
        items.append(pb.GenerateResponse(request_id=out.request_id, index=out.index, complete=complete))
    return items
