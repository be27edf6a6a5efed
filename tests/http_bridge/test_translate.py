"""Table tests of the pure JSON ⇄ proto translation."""

from __future__ import annotations

from typing import Any

import pytest

from http_bridge.schemas.chat import ChatCompletionRequest
from http_bridge.schemas.common import SamplingRequest
from http_bridge.schemas.completions import CompletionRequest
from http_bridge.schemas.constraints import CONSTRAINT_FIELDS
from http_bridge.translate import chat, common, completions
from inference_service.api.v1 import generation_pb2 as pb
from tests.http_bridge.fakes import complete, text

BASE: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
META = common.CompletionMeta(id="chatcmpl-x", created=1, model="m", system_fingerprint="fp_x")


def build(**fields: Any) -> pb.GenerateRequest:
    return chat.to_generate_request(ChatCompletionRequest.model_validate({**BASE, **fields}), "rid")


def test_minimal_request_leaves_optionals_absent() -> None:
    req = build()
    assert req.request_id == "rid"
    assert req.model == "m"
    assert req.WhichOneof("input") == "chat"
    assert [(m.role, m.content, m.name) for m in req.chat.messages] == [("user", "hi", "")]
    assert not req.chat.HasField("add_generation_prompt")
    for name in ("temperature", "top_p", "top_k", "min_p", "frequency_penalty", "presence_penalty"):
        assert not req.sampling.HasField(name), name
    assert not req.sampling.HasField("repetition_penalty")
    assert not req.sampling.HasField("seed")
    assert not req.sampling.logit_bias
    assert not req.stopping.HasField("max_tokens")
    assert list(req.stopping.stop) == []
    assert not req.stopping.ignore_eos
    assert not req.output.logprobs
    assert req.output.top_logprobs == 0
    assert req.n == 1


@pytest.mark.parametrize(
    ("field", "value", "path", "expected"),
    [
        ("temperature", 0, "sampling.temperature", 0.0),
        ("temperature", 0.7, "sampling.temperature", pytest.approx(0.7)),
        ("top_p", 0.9, "sampling.top_p", pytest.approx(0.9)),
        ("top_k", 40, "sampling.top_k", 40),
        ("top_k", -1, "sampling.top_k", 0),
        ("min_p", 0.05, "sampling.min_p", pytest.approx(0.05)),
        ("frequency_penalty", -1.5, "sampling.frequency_penalty", -1.5),
        ("presence_penalty", 2, "sampling.presence_penalty", 2.0),
        ("repetition_penalty", 1.1, "sampling.repetition_penalty", pytest.approx(1.1)),
        ("seed", 42, "sampling.seed", 42),
        ("seed", -1, "sampling.seed", 2**64 - 1),
        ("max_tokens", 16, "stopping.max_tokens", 16),
        ("max_completion_tokens", 9, "stopping.max_tokens", 9),
        ("ignore_eos", True, "stopping.ignore_eos", True),
        ("logprobs", True, "output.logprobs", True),
        ("n", 3, "n", 3),
    ],
)
def test_field_maps_to_proto(field: str, value: Any, path: str, expected: Any) -> None:
    node: Any = build(**{field: value})
    *parents, leaf = path.split(".")
    for parent in parents:
        node = getattr(node, parent)
    assert getattr(node, leaf) == expected
    if parents and parents[0] == "sampling":
        assert node.HasField(leaf)


# One value for every field both endpoints take (schemas/common.py) that reaches the GenerateRequest.
SHARED: dict[str, Any] = {
    "n": 2,
    "stop": ["x"],
    "temperature": 0.5,
    "top_p": 0.9,
    "frequency_penalty": 1,
    "presence_penalty": -1,
    "seed": 7,
    "logit_bias": {"5": 1},
    "top_k": 40,
    "min_p": 0.1,
    "repetition_penalty": 1.2,
    "ignore_eos": True,
}


def test_shared_fields_translate_the_same_for_chat_and_text() -> None:
    # A new shared field must be added to SHARED, so this proves both endpoints map it (translate/common.py).
    # Output constraints are shared too, one per request: test_structured.py maps each for both endpoints.
    unmapped = {"model", "stream", "stream_options", "user", *CONSTRAINT_FIELDS}
    assert set(SamplingRequest.model_fields) - unmapped == set(SHARED)
    from_chat = build(**SHARED)
    body = CompletionRequest.model_validate({"model": "m", "prompt": "hi", **SHARED})
    (from_text,) = completions.to_generate_requests(body, "rid")
    assert from_chat.sampling == from_text.sampling
    assert len(from_chat.sampling.ListFields()) == 9  # every sampling field above was set
    assert (list(from_chat.stopping.stop), from_chat.stopping.ignore_eos) == (["x"], True)
    assert (list(from_text.stopping.stop), from_text.stopping.ignore_eos) == (["x"], True)
    assert (from_chat.n, from_chat.model, from_chat.request_id) == (from_text.n, from_text.model, from_text.request_id)


def test_max_completion_tokens_wins_over_max_tokens() -> None:
    assert build(max_tokens=5, max_completion_tokens=8).stopping.max_tokens == 8


def test_stop_string_and_list() -> None:
    assert list(build(stop="###").stopping.stop) == ["###"]
    assert list(build(stop=["a", "b", "c", "d"]).stopping.stop) == ["a", "b", "c", "d"]


def test_top_logprobs_and_logit_bias() -> None:
    req = build(logprobs=True, top_logprobs=5, logit_bias={"50256": -100, "7": 2.5})
    assert req.output.top_logprobs == 5
    assert dict(req.sampling.logit_bias) == {50256: -100.0, 7: 2.5}


def test_messages_roles_names_and_text_parts() -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "developer", "content": "dev"},
        {
            "role": "user",
            "name": "ann",
            "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
        },
        {"role": "assistant", "content": None},
    ]
    req = build(messages=messages)
    got = [(m.role, m.content, m.name) for m in req.chat.messages]
    assert got == [
        ("system", "be brief", ""),
        ("developer", "dev", ""),
        ("user", "ab", "ann"),
        ("assistant", "", ""),
    ]


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        (pb.FINISH_REASON_EOS, "stop"),
        (pb.FINISH_REASON_STOP_SEQUENCE, "stop"),
        (pb.FINISH_REASON_STOP_TOKEN, "stop"),
        (pb.FINISH_REASON_MAX_TOKENS, "length"),
        (pb.FINISH_REASON_CONTEXT_LENGTH, "length"),
        (pb.FINISH_REASON_CANCELLED, "abort"),
    ],
)
def test_finish_reason(reason: int, expected: str) -> None:
    assert common.finish_reason(reason) == expected


def _logprob() -> pb.TokenLogprob:
    top = [
        pb.TopLogprob(token_id=5, token="Hi", logprob=-0.1, bytes=b"Hi"),
        pb.TopLogprob(token="é", logprob=-3),
    ]
    return pb.TokenLogprob(token_id=5, token="Hi", logprob=-0.1, bytes=b"Hi", top_logprobs=top)


def test_logprobs_shape() -> None:
    [item] = chat.to_logprobs([_logprob()])
    dumped = item.model_dump()
    assert dumped["token"] == "Hi"
    assert dumped["logprob"] == pytest.approx(-0.1)
    assert dumped["bytes"] == [72, 105]
    assert [t["token"] for t in dumped["top_logprobs"]] == ["Hi", "é"]
    assert dumped["top_logprobs"][1]["bytes"] == [0xC3, 0xA9]  # falls back to the token's UTF-8
    assert set(dumped["top_logprobs"][0]) == {"token", "logprob", "bytes"}


def test_stream_chunks_and_usage() -> None:
    translator = common.StreamTranslator(chat.ChatBuilder(META), n=2, usage=common.UsageTotals.for_prompts(1))
    role = translator.opening()
    assert [c.model_dump()["choices"][0]["delta"] for c in role] == [{"role": "assistant", "content": ""}] * 2
    content = translator.chunk(0, text(1, "x"))
    assert content is not None
    assert content.model_dump()["choices"] == [
        {"index": 1, "delta": {"content": "x"}, "logprobs": None, "finish_reason": None}
    ]
    assert translator.chunk(0, text(0, "")) is None  # held-back empty chunk
    final = translator.chunk(0, complete(0, pb.FINISH_REASON_MAX_TOKENS, prompt=7, completion=3))
    assert final is not None
    assert final.model_dump()["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "length",
    }
    translator.chunk(0, complete(1, prompt=7, completion=4))
    last = translator.usage_chunk().model_dump()
    assert last["choices"] == []
    assert last["usage"] == {"prompt_tokens": 7, "completion_tokens": 7, "total_tokens": 14}


def test_non_stream_accumulates_n_choices_with_logprobs() -> None:
    meta = common.CompletionMeta(id="c", created=1, model="m", system_fingerprint="fp", logprobs=True)
    responses = [
        text(0, "He", [_logprob()]),
        text(1, "Yo"),
        text(0, "llo", [_logprob()]),
        complete(1, pb.FINISH_REASON_MAX_TOKENS, prompt=4, completion=1),
        complete(0, prompt=4, completion=2),
    ]
    result = common.accumulate(chat.ChatBuilder(meta), [(0, r) for r in responses], prompts=1, n=2).model_dump()
    assert result["object"] == "chat.completion"
    assert [c["message"] for c in result["choices"]] == [
        {"role": "assistant", "content": "Hello"},
        {"role": "assistant", "content": "Yo"},
    ]
    assert [c["finish_reason"] for c in result["choices"]] == ["stop", "length"]
    assert len(result["choices"][0]["logprobs"]["content"]) == 2
    assert result["choices"][1]["logprobs"] == {"content": []}
    assert result["usage"] == {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}


def test_non_stream_without_logprobs_has_null_logprobs() -> None:
    result = common.accumulate(chat.ChatBuilder(META), [(0, text(0, "a")), (0, complete(0))], 1, 1).model_dump()
    assert result["choices"][0]["logprobs"] is None
