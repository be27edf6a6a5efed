"""`make soak`: the real stack under 32 concurrent streaming clients for a bounded time (not part of `make test`).

Random prompts, lengths, stop strings and sampling; a share of the clients leave mid-stream on purpose. Reports
requests, errors (must be 0 apart from the intended disconnects), p50/p95 latencies and the inference service's
RSS at start and end (growth must stay under 10 %), and writes the figures into docs/reliability.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.sse import DONE, SSEDecoder
from tests.e2e.conftest import MODEL_ID, free_port
from tests.e2e.reliability import rss_kib, start_bridge, start_service

DOC = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"
BEGIN, END = "<!-- soak:begin -->", "<!-- soak:end -->"
WORDS = ["dragon", "river", "castle", "quantum", "bread", "violin", "winter", "harbor", "lantern", "algebra"]
WORDS += ["orbit", "meadow", "copper", "whisper", "garden", "thunder", "compass", "museum", "pepper", "glacier"]
ASKS = ["Tell me about {}.", "Write a poem on {} and {}.", "Explain {} to a child.", "List facts about {}.", "{}?"]


@dataclass
class Totals:
    requests: int = 0
    completed: int = 0
    disconnects: int = 0
    errors: list[str] = field(default_factory=list)
    ttft: list[float] = field(default_factory=list)
    latency: list[float] = field(default_factory=list)
    chunks: int = 0


def random_body(rng: random.Random) -> dict[str, object]:
    ask = rng.choice(ASKS)
    prompt = ask.format(*rng.sample(WORDS, ask.count("{}"))) + " " * rng.randint(0, 3)
    body: dict[str, object] = {
        "model": MODEL_ID,
        "messages": [{"role": "user", "content": prompt * rng.randint(1, 4)}],
        "max_tokens": rng.randint(4, 160),
        "temperature": rng.choice([0.0, 0.7, 1.0]),
        "stream": True,
    }
    if rng.random() < 0.4:
        body["stop"] = rng.sample([".", "\n", " the", "!", ",", "ing"], rng.randint(1, 3))
    if rng.random() < 0.3:
        body["stream_options"] = {"include_usage": True}
    return body


async def one(client: httpx.AsyncClient, url: str, rng: random.Random, totals: Totals) -> None:
    body = random_body(rng)
    leave_after = rng.randint(1, 5) if rng.random() < 0.2 else None  # an intended disconnect
    totals.requests += 1
    started = time.monotonic()
    first: float | None = None
    chunks, done = 0, False
    try:
        async with client.stream("POST", url, json=body) as response:
            if response.status_code != 200:
                await response.aread()
                totals.errors.append(f"HTTP {response.status_code}: {response.text[:200]}")
                return
            decoder = SSEDecoder()
            async for line in response.aiter_lines():
                payload = decoder.feed(line)
                if payload is None:
                    continue
                if payload == DONE:
                    done = True
                    break
                if '"error"' in payload and "error" in json.loads(payload):
                    totals.errors.append(f"error event: {payload[:200]}")
                    return
                chunks += 1
                first = first or time.monotonic()
                if leave_after is not None and chunks >= leave_after:
                    totals.disconnects += 1
                    return
    except httpx.HTTPError as exc:
        totals.errors.append(f"{type(exc).__name__}: {exc}")
        return
    finally:
        totals.chunks += chunks
    if not done:
        totals.errors.append("stream ended without [DONE]")
        return
    totals.completed += 1
    totals.latency.append(time.monotonic() - started)
    if first is not None:
        totals.ttft.append(first - started)


async def drive(url: str, clients: int, seconds: float, seed: int) -> Totals:
    totals = Totals()
    stop_at = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def worker(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        while time.monotonic() < stop_at:
            await one(client, url, rng, totals)

    async with httpx.AsyncClient(timeout=httpx.Timeout(120, connect=10), limits=limits) as client:
        await asyncio.gather(*(worker(i) for i in range(clients)))
    return totals


def p(values: list[float], q: int) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def report(args: argparse.Namespace, totals: Totals, rss: tuple[int, int], wall: float) -> str:
    before, after = rss
    growth = (after - before) / before
    return "\n".join(
        [
            f"Run of `make soak SOAK_ARGS='--duration {args.duration:g} --clients {args.clients}'` "
            f"({time.strftime('%Y-%m-%d', time.gmtime())}, this 2-core CPU, default model, "
            "service defaults but `--max-model-len 2048`):",
            "",
            "| figure | value |",
            "|---|---|",
            f"| duration, concurrent streaming clients | {wall:.0f} s, {args.clients} |",
            f"| requests started | {totals.requests} |",
            f"| completed with `[DONE]` | {totals.completed} |",
            f"| intended disconnects (after 1-5 chunks) | {totals.disconnects} |",
            f"| errors (HTTP status, error event, missing `[DONE]`, transport) | {len(totals.errors)} |",
            f"| content chunks received | {totals.chunks} |",
            f"| time to first chunk p50 / p95 | {p(totals.ttft, 50) * 1000:.0f} / {p(totals.ttft, 95) * 1000:.0f} ms |",
            f"| request latency p50 / p95 | {p(totals.latency, 50):.2f} / {p(totals.latency, 95):.2f} s |",
            f"| inference RSS at start → end | {before / 1024:.0f} → {after / 1024:.0f} MiB ({growth:+.1%}) |",
        ]
    )


def write_doc(text: str) -> None:
    doc = DOC.read_text()
    if BEGIN in doc and END in doc:
        head, rest = doc.split(BEGIN, 1)
        doc = head + BEGIN + "\n" + text + "\n" + END + rest.split(END, 1)[1]
        DOC.write_text(doc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.soak.run", description=__doc__)
    parser.add_argument("--duration", type=float, default=300, help="seconds of load (default 300)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent streaming clients (default 32)")
    parser.add_argument("--warmup", type=float, default=20, help="seconds of load before the starting RSS is read")
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--no-write", action="store_true", help="do not update docs/reliability.md")
    args = parser.parse_args(argv)

    from inference_service.models import paths
    from inference_service.models.convert import convert
    from inference_service.models.pull import pull

    model_dir = convert(pull(paths.default_gguf_dir(), progress=False), paths.default_model_dir(), progress=False)
    logs = Path(tempfile.mkdtemp(prefix="ortserve-soak-"))
    port, http_port = free_port(), free_port()
    service = start_service(model_dir, port, logs, "--max-model-len", "2048")
    bridge = start_bridge(f"127.0.0.1:{port}", http_port, logs)
    url = f"http://127.0.0.1:{http_port}/v1/chat/completions"
    try:
        print(f"soak: warm-up {args.warmup:g} s, then {args.duration:g} s with {args.clients} clients; logs in {logs}")
        asyncio.run(drive(url, args.clients, args.warmup, args.seed + 1))
        rss_start = rss_kib(service.popen.pid)
        started = time.monotonic()
        totals = asyncio.run(drive(url, args.clients, args.duration, args.seed))
        wall = time.monotonic() - started
        rss_end = rss_kib(service.popen.pid)
        alive = service.popen.poll() is None and bridge.popen.poll() is None
    finally:
        bridge.stop()
        service.stop()
    text = report(args, totals, (rss_start, rss_end), wall)
    print(text)
    for error in totals.errors[:20]:
        print("error:", error, file=sys.stderr)
    growth = (rss_end - rss_start) / rss_start
    ok = alive and not totals.errors and growth < 0.10
    if not args.no_write:
        write_doc(text + ("" if ok else "\n\n**This run failed its bounds.**"))
    print("soak:", "passed" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
