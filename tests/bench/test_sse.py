from __future__ import annotations

import json

from bench.sse import SSEDecoder, body_payloads, iter_payloads, json_or_done, parse_chat_event


def feed_all(lines: list[str]) -> list[str]:
    decoder = SSEDecoder()
    return [p for line in lines if (p := decoder.feed(line)) is not None]


def test_decoder_yields_one_payload_per_blank_line_terminated_event() -> None:
    lines = ['data: {"a": 1}', "", ": keep-alive", "", "data: [DONE]", ""]
    assert feed_all(lines) == ['{"a": 1}', "[DONE]"]


def test_decoder_joins_multiline_data_ignores_other_fields_and_crlf() -> None:
    lines = ["event: message\r", "id: 3", "data: first\r", "data:second", "\r", "retry: 10", ""]
    assert feed_all(lines) == ["first\nsecond"]


def test_decoder_keeps_an_unterminated_event_pending() -> None:
    assert feed_all(["data: partial"]) == []


def test_payloads_of_lines_and_of_a_whole_body() -> None:
    assert list(iter_payloads(iter(['data: {"a": 1}', "", "data: [DONE]", ""]))) == ['{"a": 1}', "[DONE]"]
    body = 'data: {"t":"a\u2028b"}\r\n\r\n: ping\n\ndata: [DONE]\n\n'
    assert body_payloads(body) == ['{"t":"a\u2028b"}', "[DONE]"]  # U+2028 inside JSON is not a line end
    assert [json_or_done(p) for p in body_payloads(body)] == [{"t": "a\u2028b"}, "[DONE]"]


def chunk(content: str | None = None, finish: str | None = None, usage: dict[str, int] | None = None) -> str:
    choices = [] if usage else [{"index": 0, "delta": {"content": content}, "finish_reason": finish}]
    body: dict[str, object] = {"object": "chat.completion.chunk", "choices": choices}
    if usage:
        body["usage"] = usage
    return json.dumps(body)


def test_parse_content_finish_and_usage() -> None:
    assert parse_chat_event(chunk("Hel")).content == "Hel"
    assert parse_chat_event(chunk(None)).content == ""  # role chunk / llama-server's null content
    assert parse_chat_event(chunk(None, finish="length")).finish_reason == "length"
    usage = parse_chat_event(chunk(usage={"prompt_tokens": 94, "completion_tokens": 128, "total_tokens": 222}))
    assert (usage.prompt_tokens, usage.completion_tokens, usage.content) == (94, 128, "")


def test_parse_done_and_error_events() -> None:
    assert parse_chat_event("[DONE]").done
    error = parse_chat_event('{"error": {"message": "boom", "type": "server_error"}}')
    assert error.error == "boom" and not error.done
    assert parse_chat_event('"just a string"').error is not None
