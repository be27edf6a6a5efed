"""A fake inference client: scripted responses and errors, records what it was asked (no gRPC server)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from bench.sse import body_payloads, json_or_done
from inference_service.api.v1 import generation_pb2 as pb
from inference_service.api.v1 import model_pb2

MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


def rpc_error(code: grpc.StatusCode, details: str = "boom", trailing: tuple = ()) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailing), details)


def text(index: int, value: str, logprobs: list[pb.TokenLogprob] | None = None) -> pb.GenerateResponse:
    return pb.GenerateResponse(index=index, chunk=pb.TokenChunk(text=value, logprobs=logprobs or []))


def calls(index: int, *pieces: tuple[int, str, str, str], value: str = "") -> pb.GenerateResponse:
    """A chunk with tool call pieces (call index, id, name, arguments) and answer text `value`."""
    deltas = [pb.ToolCallDelta(index=i, id=id_, name=name, arguments=args) for i, id_, name, args in pieces]
    return pb.GenerateResponse(index=index, chunk=pb.TokenChunk(text=value, tool_calls=deltas))


def complete(
    index: int, reason: pb.FinishReason = pb.FINISH_REASON_EOS, prompt: int = 7, completion: int = 2
) -> pb.GenerateResponse:
    usage = pb.Usage(prompt_tokens=prompt, completion_tokens=completion)
    return pb.GenerateResponse(index=index, complete=pb.GenerationComplete(finish_reason=reason, usage=usage))


def hello(n: int = 1) -> list[pb.GenerateResponse]:
    out: list[pb.GenerateResponse] = []
    for i in range(n):
        out += [text(i, "Hel"), text(i, "lo")]
    out += [complete(i) for i in range(n)]
    return out


@dataclass
class FakeClient:
    """`script` is what Generate yields; an exception in it is raised at that point of the stream."""

    script: Sequence[pb.GenerateResponse | BaseException] = field(default_factory=hello)
    models: list[model_pb2.ModelInfo] = field(
        default_factory=lambda: [model_pb2.ModelInfo(id=MODEL_ID, created=1700000000, fingerprint="abc123")]
    )
    healthy: bool = True
    block_after_script: bool = False
    requests: list[tuple[pb.GenerateRequest, str, float | None]] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)

    async def generate(
        self, request: pb.GenerateRequest, request_id: str, timeout: float | None
    ) -> AsyncGenerator[pb.GenerateResponse, None]:
        self.requests.append((request, request_id, timeout))
        try:
            for item in self.script:
                await asyncio.sleep(0)
                if isinstance(item, BaseException):
                    raise item
                yield item
            if self.block_after_script:
                await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.closed.append("cancelled")
            raise
        except GeneratorExit:
            self.closed.append("closed")
            raise
        else:
            self.closed.append("finished")

    async def list_models(self) -> list[model_pb2.ModelInfo]:
        return list(self.models)

    async def get_model_info(self, model: str) -> model_pb2.ModelInfo:
        for info in self.models:
            if info.id == model:
                return info
        raise rpc_error(grpc.StatusCode.NOT_FOUND, f"model {model!r} is not served")

    async def health(self, timeout: float | None) -> bool:
        return self.healthy


def sse_payloads(body: str) -> list[object]:
    """Split an SSE body into decoded JSON payloads, '[DONE]' kept as the string; the framing must be exactly
    one `data: ` line per event and a blank line after each."""
    payloads = body_payloads(body)
    assert body == "".join(f"data: {payload}\n\n" for payload in payloads), body
    return [json_or_done(payload) for payload in payloads]


def chat_scope(headers: Sequence[tuple[bytes, bytes]] = (), spec_version: str = "2.3") -> dict[str, Any]:
    """A raw ASGI scope of `POST /v1/chat/completions` (JSON body), for tests that drive the app's receive/send."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": spec_version},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"host", b"bridge"), *headers],
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 8000),
    }
