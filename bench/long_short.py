"""`python -m bench long-short`: one long prompt, short streaming requests arriving while it prefills.

What it measures is fairness: the short requests' time to first token while a ~6,500-token prompt is being
prefilled, and what sharing the steps costs the long request (its total time). ortserve (default settings, so fair
prefill on) and llama-server run in turn; `--baseline` adds ortserve with `--long-prefill-token-threshold 0` (prompts
prefilled oldest first). The section it writes replaces the one of the same title in docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from bench import llama_build, machine, servers
from bench.clients import GenParams, HTTPChatClient, StreamClient
from bench.load import SHORT_PROMPT_WORDS
from bench.prompts import make_prompt
from bench.report import LONG_SHORT_TITLE, fmt, splice_section, table
from bench.stats import RequestResult, percentile

log = logging.getLogger(__name__)

MODEL_ID = "smollm2-135m-instruct"
BASELINE = "ortserve, oldest first"


@dataclass(slots=True, frozen=True)
class LongShortPlan:
    long_words: int = 5520  # ~6,500 prompt tokens after SmolLM2's ChatML template
    shorts: int = 10
    first_short_s: float = 1.0  # the first short request is sent this long after the long one
    interval_s: float = 1.0  # then one every interval
    max_tokens: int = 32  # output tokens of every request (`ignore_eos`)
    repeats: int = 1
    threads: int = 2
    parallel: int = 16  # ortserve --max-num-seqs
    llama_parallel: int = 4  # llama-server -np: its slots must each hold the long prompt
    llama_ctx: int = 32768  # 4 slots × 8,192 tokens


@dataclass(slots=True)
class LongShortRun:
    long: RequestResult
    shorts: list[RequestResult] = field(default_factory=list)


async def run_long_short(client: StreamClient, plan: LongShortPlan, run_id: str) -> LongShortRun:
    """Send the long request, then the short ones on a fixed schedule, and wait for all of them."""
    params = GenParams(max_tokens=plan.max_tokens, request_timeout_s=600.0)

    async def short(i: int) -> RequestResult:
        await asyncio.sleep(plan.first_short_s + i * plan.interval_s)
        return await client.stream(make_prompt(run_id, i + 1, SHORT_PROMPT_WORDS), params)

    long = asyncio.create_task(client.stream(make_prompt(run_id, 0, plan.long_words), params))
    shorts = await asyncio.gather(*(short(i) for i in range(plan.shorts)))
    return LongShortRun(await long, list(shorts))


def summary_row(name: str, runs: list[LongShortRun]) -> list[str]:
    """[server, long prompt tokens, long TTFT s, long total s, short TTFT p50 / p95 / max ms, during, errors]."""
    ttfts = [t * 1000 for r in runs for s in r.shorts if s.error is None and (t := s.ttft) is not None]
    longs = [r.long for r in runs if r.long.error is None]
    # a short request counts as "during" when its first token came before the long request's first token
    during = sum(
        1 for r in runs for s in r.shorts if s.first_token is not None and r.long.first_token is not None
        and s.first_token < r.long.first_token
    )  # fmt: skip
    errors = sum(r.long.error is not None for r in runs) + sum(s.error is not None for r in runs for s in r.shorts)
    total = [r.end - r.start for r in longs]
    first = [t for r in longs if (t := r.ttft) is not None]
    return [
        name,
        fmt(percentile([float(r.prompt_tokens) for r in longs], 50), 0),
        fmt(percentile(first, 50)),
        fmt(percentile(total, 50)),
        fmt(percentile(ttfts, 50), 0),
        fmt(percentile(ttfts, 95), 0),
        fmt(max(ttfts) if ttfts else float("nan"), 0),
        f"{during} / {sum(len(r.shorts) for r in runs)}",
        str(errors),
    ]


HEADER = [
    "server", "long prompt tokens", "long TTFT s", "long total s", "short TTFT p50 ms", "short TTFT p95 ms",
    "short TTFT max ms", "short first tokens before the long one's", "errors",
]  # fmt: skip


def render(plan: LongShortPlan, rows: list[list[str]], command: str, started: str, conditions: list[str]) -> str:
    lines = [
        LONG_SHORT_TITLE,
        "",
        f"Written by `{command}` (run started {started}); median over {plan.repeats} repeat(s). One streaming chat "
        f"request with a ~6,500-token prompt (`{plan.long_words}` filler words), then {plan.shorts} short streaming "
        f"requests (~94 prompt tokens each), the first {plan.first_short_s:g} s after it and then one every "
        f"{plan.interval_s:g} s; every request generates {plan.max_tokens} tokens (temperature 0, `ignore_eos`). "
        "Short TTFT = request sent → first content chunk, over all short requests. Goal (issue 21): short TTFT p95 "
        "under 1 s while the long prompt prefills, the long request at most 20 % slower.",
        "",
        table(HEADER, rows),
        "",
        *[f"- {line}" for line in conditions],
    ]
    return "\n".join(lines) + "\n"


async def _measure(plan: LongShortPlan, clients: dict[str, StreamClient]) -> dict[str, list[LongShortRun]]:
    results: dict[str, list[LongShortRun]] = {name: [] for name in clients}
    for client in clients.values():  # warm-up: sessions, connections, first-call costs
        await client.stream(make_prompt("warm", 0, SHORT_PROMPT_WORDS), GenParams(max_tokens=4))
    for repeat in range(plan.repeats):
        names = list(clients) if repeat % 2 == 0 else list(reversed(clients))
        for name in names:
            run = await run_long_short(clients[name], plan, uuid.uuid4().hex[:8])
            summary = summary_row(name, [run])
            log.info("%s repeat %d: long %s s, short TTFT p50 %s ms, p95 %s ms", name, repeat + 1, summary[3],
                     summary[4], summary[5])  # fmt: skip
            results[name].append(run)
    return results


def measure(plan: LongShortPlan, log_dir: Path, baseline: bool, command: str, out: Path, note: str = "") -> str:
    """Start the servers, run the scenario, write the section into `out` (replacing its previous version)."""
    binary = llama_build.ensure_llama_server()
    from bench.compare import _default_gguf, _git_describe  # the same model file and source stamp as compare

    gguf = _default_gguf()
    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load_before = machine.load_average()
    source = _git_describe()
    off = ("--long-prefill-token-threshold", "0")
    with (
        servers.ortserve(log_dir, plan.threads, plan.parallel) as ours,
        servers.llama_server(binary, gguf, log_dir, plan.threads, plan.llama_parallel, plan.llama_ctx) as (_, url),
    ):
        clients: dict[str, StreamClient] = {
            "ortserve": HTTPChatClient(ours.base_url, MODEL_ID, name="ortserve"),
            "llama-server": HTTPChatClient(url, MODEL_ID, name="llama-server"),
        }
        if baseline:
            with servers.ortserve(log_dir, plan.threads, plan.parallel, extra=off) as old:
                clients[BASELINE] = HTTPChatClient(old.base_url, MODEL_ID, name=BASELINE)
                results = asyncio.run(_run(plan, clients))
        else:
            results = asyncio.run(_run(plan, clients))
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    m = machine.describe(lscpu, llama_build.server_version(binary))
    gpu = "a GPU" if Path("/dev/nvidia0").exists() else "no GPU"
    conditions = [
        f"Machine: {m.cpu}, {m.cores} cores, {gpu}; onnxruntime {m.onnxruntime}; llama.cpp {m.llama_cpp}; load "
        f"average before / after: {load_before} / {machine.load_average()}.",
        f"ortserve (git {source}): `python -m inference_service serve --threads {plan.threads} --max-num-seqs "
        f"{plan.parallel}` (fair prefill at its defaults) + `python -m http_bridge`"
        + (f"; `{BASELINE}`: the same with `--long-prefill-token-threshold 0`" if baseline else "")
        + f". llama-server: `-np {plan.llama_parallel} -t {plan.threads} -c {plan.llama_ctx}` "
        f"({plan.llama_ctx // plan.llama_parallel} tokens per slot, so that one holds the long prompt).",
    ]
    conditions += [note] if note else []
    rows = [summary_row(name, runs) for name, runs in results.items()]
    section = render(plan, rows, command, started, conditions)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(splice_section(out.read_text() if out.exists() else "", LONG_SHORT_TITLE, section))
    return section


async def _run(plan: LongShortPlan, clients: dict[str, StreamClient]) -> dict[str, list[LongShortRun]]:
    try:
        return await _measure(plan, clients)
    finally:
        for client in clients.values():
            await client.aclose()
