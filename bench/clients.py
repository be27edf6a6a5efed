"""One streamed chat request against an OpenAI-compatible HTTP server or ortserve's gRPC API."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Protocol

import grpc
import httpx

from bench.prompts import ChatPrompt
from bench.sse import SSEDecoder, parse_chat_event
from bench.stats import RequestResult
from inference_service.api.v1 import generation_pb2, generation_pb2_grpc


@dataclass(slots=True, frozen=True)
class GenParams:
    max_tokens: int = 128
    request_timeout_s: float = 300.0


class StreamClient(Protocol):
    name: str

    async def stream(self, prompt: ChatPrompt, params: GenParams) -> RequestResult: ...

    async def aclose(self) -> None: ...


class HTTPChatClient:
    """Streaming `POST /v1/chat/completions`; `ignore_eos` is understood by ortserve's bridge and by llama-server."""

    def __init__(self, base_url: str, model: str, name: str = "http") -> None:
        self.name = name
        self.model = model
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
        self._client = httpx.AsyncClient(base_url=base_url, limits=limits, timeout=httpx.Timeout(300.0))

    def body(self, prompt: ChatPrompt, params: GenParams) -> dict[str, object]:
        return {
            "model": self.model,
            "messages": prompt.messages(),
            "stream": True,
            "stream_options": {"include_usage": True},
            "temperature": 0,
            "max_tokens": params.max_tokens,
            "ignore_eos": True,
        }

    async def stream(self, prompt: ChatPrompt, params: GenParams, stop_after: int | None = None) -> RequestResult:
        """Read the stream to the end, or close the connection after `stop_after` content chunks."""
        result = RequestResult(start=time.perf_counter(), end=0.0)
        decoder = SSEDecoder()
        chunks = 0
        try:
            async with (
                asyncio.timeout(params.request_timeout_s),
                self._client.stream("POST", "/v1/chat/completions", json=self.body(prompt, params)) as response,
            ):
                if response.status_code != 200:
                    await response.aread()
                    result.error = f"HTTP {response.status_code}: {response.text[:200]}"
                    return result
                async for line in response.aiter_lines():
                    payload = decoder.feed(line)
                    if payload is None:
                        continue
                    event = parse_chat_event(payload)
                    now = time.perf_counter()
                    if event.error is not None:
                        result.error = event.error
                        break
                    if event.content:
                        chunks += 1
                        result.chunk_times.append(now)
                        if result.first_token is None:
                            result.first_token = now
                    if event.prompt_tokens is not None:
                        result.prompt_tokens = event.prompt_tokens
                    if event.completion_tokens is not None:
                        result.output_tokens = event.completion_tokens
                    if event.done or (stop_after is not None and chunks >= stop_after):
                        break
        except (httpx.HTTPError, OSError, TimeoutError) as exc:
            result.error = f"{type(exc).__name__}: {exc}"
        finally:
            result.end = time.perf_counter()
        if result.output_tokens == 0:
            result.output_tokens = chunks
        return result

    async def aclose(self) -> None:
        await self._client.aclose()


class GRPCChatClient:
    """Server-streaming `GenerationService.Generate` with chat input, straight to the inference service."""

    def __init__(self, target: str, model: str, name: str = "grpc") -> None:
        self.name = name
        self.model = model
        self._channel = grpc.aio.insecure_channel(target)
        self._stub = generation_pb2_grpc.GenerationServiceStub(self._channel)

    def request(self, prompt: ChatPrompt, params: GenParams) -> generation_pb2.GenerateRequest:
        messages = [generation_pb2.ChatMessage(role=m["role"], content=m["content"]) for m in prompt.messages()]
        return generation_pb2.GenerateRequest(
            model=self.model,
            chat=generation_pb2.ChatInput(messages=messages),
            sampling=generation_pb2.SamplingParams(temperature=0.0),
            stopping=generation_pb2.StoppingCriteria(max_tokens=params.max_tokens, ignore_eos=True),
        )

    async def stream(self, prompt: ChatPrompt, params: GenParams) -> RequestResult:
        result = RequestResult(start=time.perf_counter(), end=0.0)
        chunks = 0
        try:
            call = self._stub.Generate(self.request(prompt, params), timeout=params.request_timeout_s)
            async for message in call:
                now = time.perf_counter()
                if message.HasField("chunk") and message.chunk.text:
                    chunks += 1
                    result.chunk_times.append(now)
                    if result.first_token is None:
                        result.first_token = now
                elif message.HasField("complete"):
                    result.prompt_tokens = message.complete.usage.prompt_tokens
                    result.output_tokens = message.complete.usage.completion_tokens
        except grpc.aio.AioRpcError as exc:
            result.error = f"{exc.code().name}: {exc.details()}"
        finally:
            result.end = time.perf_counter()
        if result.output_tokens == 0:
            result.output_tokens = chunks
        return result

    async def aclose(self) -> None:
        await self._channel.close()
