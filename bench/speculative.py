"""`python -m bench speculative`: output tok/s with speculative decoding on and off, on copy-heavy and standard prompts.

ortserve with `--speculative ngram` (its default), ortserve with `--speculative none` and llama-server run in turn,
each on four scenarios — the standard one of `bench compare` (summarise a passage and go on writing), question
answering over a given context, extraction from a paragraph and a code edit — at concurrency 1 and 16. Requests are
greedy and stop at EOS or `max_tokens` (so copying what the answer needs is what is measured, not what a model
writes after its answer). The acceptance rate comes from ortserve's GetServerLoad counters. The section it writes
replaces the one of the same title in docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

from bench import llama_build, machine, servers
from bench.clients import GenParams, HTTPChatClient
from bench.prompts import ChatPrompt, make_prompt
from bench.report import SPECULATIVE_TITLE, fmt, splice_section, table
from bench.stats import RequestResult, summarize
from inference_service.api.v1 import model_pb2, model_pb2_grpc

log = logging.getLogger(__name__)

MODEL_ID = "smollm2-135m-instruct"
ON, OFF, THEIRS = "ortserve, speculative ngram", "ortserve, speculative none", "llama-server"

CONTEXT = (
    "Lake Baikal in Siberia is the deepest lake in the world, reaching 1,642 metres, and the oldest, at about 25 "
    "million years. It holds 23,615 cubic kilometres of fresh water, about 22 percent of the fresh surface water on "
    "Earth. More than 330 rivers flow into it, but only one, the Angara, flows out. The lake is 636 kilometres long "
    "and 79 kilometres wide at its widest point. Its surface freezes from January to May, and the ice can be more "
    "than a metre thick. The nerpa, a freshwater seal found nowhere else, lives in the lake, along with more than "
    "1,000 other species of animals that exist only there. The city of Irkutsk lies 70 kilometres from its shore."
)
CODE = """def summarize_orders(orders):
    total = 0
    count = 0
    for order in orders:
        if order["status"] == "paid":
            total += order["amount"]
            count += 1
    average = total / count if count else 0
    return {"total": total, "count": count, "average": average}
"""


def _standard(run_id: str, i: int) -> ChatPrompt:
    return make_prompt(run_id, i, 80)


def _qa(run_id: str, i: int) -> ChatPrompt:
    question = "How deep is Lake Baikal, how old is it, and which river flows out of it? Answer from the text."
    return ChatPrompt(f"Session {run_id}-{i:05d}. You are a helpful assistant.", f"{CONTEXT}\n\n{question}")


def _extraction(run_id: str, i: int) -> ChatPrompt:
    ask = "List every number in the text above with what it measures, one per line, in the words of the text."
    return ChatPrompt(f"Session {run_id}-{i:05d}. You are a helpful assistant.", f"{CONTEXT}\n\n{ask}")


def _code_edit(run_id: str, i: int) -> ChatPrompt:
    ask = "Rename the variable `count` to `paid_orders` and write out the whole function."
    return ChatPrompt(f"Session {run_id}-{i:05d}. You are a helpful assistant.", f"```python\n{CODE}```\n\n{ask}")


SCENARIOS: dict[str, Callable[[str, int], ChatPrompt]] = {
    "standard": _standard,
    "question answering": _qa,
    "extraction": _extraction,
    "code edit": _code_edit,
}


@dataclass(slots=True, frozen=True)
class SpecPlan:
    concurrency: tuple[int, ...] = (1, 16)
    requests: tuple[int, ...] = (6, 32)  # per scenario at each concurrency
    max_tokens: int = 160
    threads: int = 2
    parallel: int = 16


class StoppingClient(HTTPChatClient):
    """Greedy, stopping at EOS (the shared client sets `ignore_eos` for throughput runs)."""

    def body(self, prompt: ChatPrompt, params: GenParams) -> dict[str, object]:
        return {**super().body(prompt, params), "ignore_eos": False}


async def _level(
    client: HTTPChatClient, scenario: str, concurrency: int, requests: int, plan: SpecPlan
) -> list[RequestResult]:
    run_id = uuid.uuid4().hex[:8]
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)
    results: list[RequestResult] = []

    async def worker() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            results.append(await client.stream(SCENARIOS[scenario](run_id, i), GenParams(max_tokens=plan.max_tokens)))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results


async def _counters(target: str | None) -> tuple[int, int]:
    if target is None:
        return 0, 0
    async with grpc.aio.insecure_channel(target) as channel:
        load = await model_pb2_grpc.ModelServiceStub(channel).GetServerLoad(model_pb2.GetServerLoadRequest())
    return load.draft_tokens, load.accepted_draft_tokens


Rows = dict[tuple[str, int], list[str]]  # (scenario, concurrency) → the table's figures


async def _measure(name: str, client: HTTPChatClient, target: str | None, plan: SpecPlan) -> Rows:
    rows = {}
    await _level(client, "standard", 2, 2, plan)  # warm-up
    for scenario in SCENARIOS:
        for concurrency, requests in zip(plan.concurrency, plan.requests, strict=True):
            drafted0, accepted0 = await _counters(target)
            runs = await _level(client, scenario, concurrency, requests, plan)
            drafted, accepted = await _counters(target)
            s = summarize(runs, concurrency)
            rate = (accepted - accepted0) / (drafted - drafted0) if drafted > drafted0 else None
            tokens = sum(r.output_tokens for r in runs if r.error is None)
            log.info("%s, %s, c=%d: %.1f tok/s, acceptance %s", name, scenario, concurrency, s.output_tok_s, rate)
            rows[(scenario, concurrency)] = [
                fmt(s.output_tok_s),
                "" if target is None else ("no drafts" if rate is None else f"{rate:.0%} of {drafted - drafted0}"),
                fmt(tokens / max(1, len(runs)), 0),
                f"{s.requests} / {s.errors}",
            ]
    return rows


async def _run(name: str, base_url: str, target: str | None, plan: SpecPlan) -> Rows:
    client = StoppingClient(base_url, MODEL_ID, name=name)
    try:
        return await _measure(name, client, target, plan)
    finally:
        await client.aclose()


HEADER = [
    "scenario", "concurrency", "server", "output tok/s", "drafts accepted", "tokens per reply", "requests / errors",
]  # fmt: skip


def measure(plan: SpecPlan, log_dir: Path, command: str, out: Path) -> str:
    """Start each server in turn, run every scenario, write the section into `out` (replacing its previous one)."""
    binary = llama_build.ensure_llama_server()
    from bench.compare import _default_gguf, _git_describe  # the same model file and source stamp as compare

    gguf = _default_gguf()
    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load_before = machine.load_average()
    source = _git_describe()
    results: dict[str, Rows] = {}
    for name, extra in ((ON, ("--speculative", "ngram")), (OFF, ("--speculative", "none"))):
        with servers.ortserve(log_dir, plan.threads, plan.parallel, extra=extra) as stack:
            results[name] = asyncio.run(_run(name, stack.base_url, stack.grpc_target, plan))
    ctx = plan.parallel * 1536
    with servers.llama_server(binary, gguf, log_dir, plan.threads, plan.parallel, ctx) as (_, url):
        results[THEIRS] = asyncio.run(_run(THEIRS, url, None, plan))
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    m = machine.describe(lscpu, llama_build.server_version(binary))
    levels = ", ".join(f"{r} requests at concurrency {c}" for c, r in zip(plan.concurrency, plan.requests, strict=True))
    rows = [
        [scenario, str(c), name, *results[name][(scenario, c)]]
        for scenario in SCENARIOS
        for c in plan.concurrency
        for name in results
    ]
    lines = [
        SPECULATIVE_TITLE,
        "",
        f"Written by `{command}` (run started {started}). Greedy chat requests that stop at EOS or {plan.max_tokens} "
        "tokens, on four scenarios: `standard` (the filler passage of `bench compare`, summarise and go on), "
        "`question answering` over a given paragraph, `extraction` of the paragraph's figures, and a `code edit` "
        f"that rewrites a given function; {levels} "
        "per scenario and server. `drafts accepted`: accepted / drafted tokens over the run (ortserve's "
        "GetServerLoad counters). Goal (issue 18): one-stream throughput up where replies repeat the context, never "
        "down by more than noise elsewhere.",
        "",
        table(HEADER, rows),
        "",
        f"- Machine: {m.cpu}, {m.cores} cores, no GPU; onnxruntime {m.onnxruntime}; llama.cpp {m.llama_cpp}; load "
        f"average before / after: {load_before} / {machine.load_average()}.",
        f"- ortserve (git {source}): `python -m inference_service serve --threads {plan.threads} --max-num-seqs "
        f"{plan.parallel} --speculative ngram|none` + `python -m http_bridge`; llama-server: `-np {plan.parallel} "
        f"-t {plan.threads} -c {ctx}`, no draft model and no lookup decoding (llama-server's defaults).",
    ]  # fmt: skip
    section = "\n".join(lines) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(splice_section(out.read_text() if out.exists() else "", SPECULATIVE_TITLE, section))
    return section
