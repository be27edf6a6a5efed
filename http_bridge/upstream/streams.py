"""Helpers over Generate response streams: await the first message, read to the end unless the client leaves,
and merge several streams (one per prompt of a text completion). Closing any of them cancels its gRPC call."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any, TypeVar

from fastapi import Request

from http_bridge import sse
from http_bridge.errors import UpstreamProtocolError, UpstreamTimeoutError, error_event
from http_bridge.translate.common import Indexed
from inference_service.api.v1 import generation_pb2 as pb

logger = logging.getLogger(__name__)

Stream = AsyncGenerator[pb.GenerateResponse, None]
T = TypeVar("T")


async def first_message(stream: Stream, timeout_s: float) -> pb.GenerateResponse:
    """Await the first response so that early errors (bad prompt, unknown model) become HTTP statuses."""
    try:
        async with asyncio.timeout(timeout_s):
            return await anext(stream)
    except StopAsyncIteration:
        raise UpstreamProtocolError("The inference service ended the stream without output.") from None
    except TimeoutError:
        await stream.aclose()
        raise UpstreamTimeoutError(f"No output from the inference service within {timeout_s:g} s.") from None


async def first_messages(streams: list[Stream], timeout_s: float) -> list[pb.GenerateResponse]:
    """The first response of every stream; if one fails, all are closed and its error is raised."""
    try:
        return list(await asyncio.gather(*(first_message(s, timeout_s) for s in streams)))
    except BaseException:
        await asyncio.gather(*(s.aclose() for s in streams), return_exceptions=True)
        raise


def merge(streams: list[Stream], firsts: Sequence[pb.GenerateResponse] = ()) -> AsyncGenerator[Indexed, None]:
    """(stream index, response) pairs in arrival order, after `firsts` (already read from streams[i])."""
    return _merge_one(streams[0], firsts) if len(streams) == 1 else _merge_many(streams, firsts)


async def _merge_one(stream: Stream, firsts: Sequence[pb.GenerateResponse]) -> AsyncGenerator[Indexed, None]:
    # One stream (every chat request) is read in place: no pump task, no queue hop per token.
    try:
        for first in firsts:
            yield 0, first
        async for response in stream:
            yield 0, response
    finally:
        await stream.aclose()


async def _merge_many(streams: list[Stream], firsts: Sequence[pb.GenerateResponse]) -> AsyncGenerator[Indexed, None]:
    queue: asyncio.Queue[tuple[int, pb.GenerateResponse | BaseException | None]] = asyncio.Queue()

    async def pump(i: int, stream: Stream) -> None:
        try:
            async for response in stream:
                await queue.put((i, response))
            await queue.put((i, None))
        except Exception as exc:
            await queue.put((i, exc))
        finally:
            await stream.aclose()

    for i, first in enumerate(firsts):
        queue.put_nowait((i, first))
    tasks = [asyncio.ensure_future(pump(i, s)) for i, s in enumerate(streams)]
    try:
        remaining = len(streams)
        while remaining:
            i, item = await queue.get()
            if item is None:
                remaining -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield i, item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _read_all(stream: AsyncGenerator[T, None]) -> list[T]:
    try:
        return [item async for item in stream]
    finally:
        await stream.aclose()


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def read_all_unless_disconnected(stream: AsyncGenerator[T, None], request: Request) -> list[T] | None:
    """The whole stream, or None when the client left first (then the stream is closed: gRPC cancelled)."""
    reader = asyncio.ensure_future(_read_all(stream))
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({reader, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if reader.done():
            return reader.result()
        return None
    finally:
        for task in (reader, watcher):
            task.cancel()
        await asyncio.gather(reader, watcher, return_exceptions=True)


async def sse_body(
    events: AsyncGenerator[bytes, None], upstreams: Sequence[AsyncGenerator[Any, None]]
) -> AsyncIterator[bytes]:
    """The events, then `data: [DONE]`. After the 200 went out an error travels in-band as one error event.

    Closing this generator (the client left) closes `upstreams` in order, which cancels the gRPC call(s): name the
    merge first and then its calls, which a merge that never started would leave open.
    """
    try:
        async for item in events:
            yield item
    except Exception as exc:
        logger.warning("stream failed after it started: %r", exc)
        yield sse.event(error_event(exc))
    finally:
        await events.aclose()
        for upstream in upstreams:
            await upstream.aclose()
    yield sse.DONE
