"""Merging several Generate streams: arrival order, errors, and every stream closed when the consumer leaves."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import grpc
import pytest

from http_bridge.upstream import streams
from tests.http_bridge.fakes import FakeClient, hello, rpc_error, text

pytestmark = pytest.mark.anyio


async def test_merge_yields_every_response_with_its_stream_index() -> None:
    fakes = [FakeClient(), FakeClient(script=hello(n=2))]
    calls = [fake.generate(None, "r", None) for fake in fakes]  # type: ignore[arg-type]
    firsts = await streams.first_messages(calls, timeout_s=5)
    merged = [(i, r.index, r.WhichOneof("kind")) async for i, r in streams.merge(calls, firsts)]
    assert sorted(merged) == sorted(
        [(0, 0, "chunk")] * 2
        + [(0, 0, "complete")]
        + [(1, 0, "chunk")] * 2
        + [(1, 1, "chunk")] * 2
        + [(1, 0, "complete"), (1, 1, "complete")]
    )
    assert [fake.closed for fake in fakes] == [["finished"], ["finished"]]


async def test_error_in_one_stream_closes_the_others() -> None:
    failing = FakeClient(script=[text(0, "a"), rpc_error(grpc.StatusCode.UNAVAILABLE, "gone")])
    blocked = FakeClient(script=[text(0, "b")], block_after_script=True)
    merged = streams.merge([failing.generate(None, "r", None), blocked.generate(None, "r", None)])  # type: ignore[arg-type]
    with pytest.raises(grpc.aio.AioRpcError):
        async for _ in merged:
            pass
    await merged.aclose()
    assert blocked.closed == ["cancelled"]


async def test_consumer_leaving_cancels_every_stream() -> None:
    fakes = [FakeClient(script=[text(0, "x")], block_after_script=True) for _ in range(3)]
    merged = streams.merge([fake.generate(None, "r", None) for fake in fakes])  # type: ignore[arg-type]
    await anext(merged)
    await merged.aclose()
    await asyncio.sleep(0)
    assert [fake.closed for fake in fakes] == [["cancelled"]] * 3


async def test_first_messages_failure_closes_all() -> None:
    ok = FakeClient(script=[text(0, "x")], block_after_script=True)
    bad = FakeClient(script=[rpc_error(grpc.StatusCode.NOT_FOUND, "no model")])
    calls = [ok.generate(None, "r", None), bad.generate(None, "r", None)]  # type: ignore[arg-type]
    with pytest.raises(grpc.aio.AioRpcError):
        await streams.first_messages(calls, timeout_s=5)
    assert ok.closed == ["closed"]


async def test_sse_body_closes_the_calls_of_a_merge_that_never_started() -> None:
    fake = FakeClient(script=[text(0, "x")], block_after_script=True)
    call = fake.generate(None, "r", None)  # type: ignore[arg-type]
    merged = streams.merge([call], [await streams.first_message(call, timeout_s=5)])

    async def events() -> AsyncGenerator[bytes, None]:
        yield b"opening"  # e.g. chat's role chunks, sent before the merge is read
        async for _ in merged:
            yield b"x"

    body = streams.sse_body(events(), [merged, call])
    assert isinstance(body, AsyncGenerator)  # so the client can leave: aclose()
    assert await anext(body) == b"opening"
    await body.aclose()  # the client left
    assert fake.closed == ["closed"]
