"""`python -m bench compare`: both servers side by side, scenarios interleaved, results to docs/benchmarks.md."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import logging
import subprocess
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import llama_build, machine, servers
from bench.clients import GenParams, GRPCChatClient, HTTPChatClient, StreamClient
from bench.load import Scenario, measure_cancel_to_free, measure_prefill, prefill_tok_s, run_scenario
from bench.report import (
    CONSTRAINED_TITLE,
    GRPC,
    LONG_SHORT_TITLE,
    OURS,
    SPECULATIVE_TITLE,
    THEIRS,
    Results,
    plot,
    render_markdown,
    section_of,
    splice_section,
)
from bench.stats import summarize

log = logging.getLogger(__name__)

MODEL_ID = "smollm2-135m-instruct"
REPO = Path(__file__).resolve().parent.parent


@dataclass(slots=True, frozen=True)
class Plan:
    scenarios: tuple[Scenario, ...]
    repeats: int
    prefill_probes: int  # per repeat
    cancel_probes: int
    max_tokens: int = 128
    grpc_at: tuple[int, ...] = (1, 16)  # also run direct gRPC here: bridge vs gRPC (target at 16; 1 = pure overhead)
    threads: int = 2
    parallel: int = 16  # llama-server slots = ortserve --max-num-seqs
    llama_ctx: int = 24576  # 16 slots × 1,536 tokens: enough for the ~1,000-token prefill probe

    @staticmethod
    def full() -> Plan:
        scenarios = (Scenario(1, 4, 240), Scenario(4, 8, 240), Scenario(16, 32, 300), Scenario(32, 32, 420))
        return Plan(scenarios, repeats=2, prefill_probes=2, cancel_probes=20)

    @staticmethod
    def quick() -> Plan:
        scenarios = (Scenario(1, 2, 120), Scenario(4, 4, 120), Scenario(16, 16, 180))
        return Plan(scenarios, repeats=1, prefill_probes=1, cancel_probes=3)


def _order(names: Sequence[str], repeat: int) -> list[str]:
    """A, B, A, B … with the order flipped on odd repeats, so neither server always runs first."""
    return list(names) if repeat % 2 == 0 else list(reversed(names))


def _cpu_snapshot(pids: dict[str, int]) -> dict[str, float]:
    snapshot = {name: servers.cpu_seconds(pid) for name, pid in pids.items()}
    snapshot["client"] = time.process_time()
    return snapshot


async def _measure(plan: Plan, clients: dict[str, StreamClient], ours_http: HTTPChatClient, grpc_target: str,
                   results: Results, pids: dict[str, dict[str, int]]) -> None:  # fmt: skip
    params = GenParams(max_tokens=plan.max_tokens)
    for client in clients.values():  # warm-up: first-call costs (sessions, caches, connections) stay out
        await run_scenario(client, Scenario(2, 2, 120), f"warm-{uuid.uuid4().hex[:8]}", params)
    for scenario in plan.scenarios:
        names = [OURS, THEIRS] + ([GRPC] if scenario.concurrency in plan.grpc_at else [])
        for repeat in range(plan.repeats):
            for name in _order(names, repeat):
                log.info("%s: concurrency %d, repeat %d", name, scenario.concurrency, repeat + 1)
                before = _cpu_snapshot(pids[name])
                runs = await run_scenario(clients[name], scenario, uuid.uuid4().hex[:8], params)
                after = _cpu_snapshot(pids[name])
                summary = summarize(runs, scenario.concurrency)
                spent = results.cpu_s.setdefault(name, {}).setdefault(scenario.concurrency, {})
                for process, seconds in after.items():
                    spent[process] = spent.get(process, 0.0) + seconds - before[process]
                tokens = results.cpu_tokens.setdefault(name, {})
                tokens[scenario.concurrency] = tokens.get(scenario.concurrency, 0) + summary.output_tokens
                log.info("  %.1f tok/s, TTFT p50 %.0f ms, errors %d", summary.output_tok_s, summary.ttft_p50_ms,
                         summary.errors)  # fmt: skip
                for failed in [r.error for r in runs if r.error][:3]:
                    log.warning("  error: %s", failed)
                results.runs.setdefault(name, {}).setdefault(scenario.concurrency, []).append(summary)
    for repeat in range(plan.repeats):
        for name in _order([OURS, THEIRS], repeat):
            probes = await measure_prefill(clients[name], uuid.uuid4().hex[:8], plan.prefill_probes)
            results.prefill.setdefault(name, []).append(prefill_tok_s(probes))
            prompt_tokens = [p.prompt_tokens for p in probes if p.error is None]
            if prompt_tokens:
                results.prefill_prompt_tokens[name] = sum(prompt_tokens) / len(prompt_tokens)
            log.info("%s prefill: %.1f tok/s", name, results.prefill[name][-1])
    results.cancel_to_free_s = await measure_cancel_to_free(
        ours_http, grpc_target, uuid.uuid4().hex[:8], plan.cancel_probes
    )


def write(results: Results, out: Path, observations: str = "") -> None:
    """docs/benchmarks.md and its plot (benchmarks.png beside it)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    plot_path = out.with_suffix(".png")
    plot(results, plot_path)
    page = render_markdown(results, plot_path.name, observations)
    old = out.read_text() if out.exists() else ""
    # sections written by `python -m bench long-short` / `speculative` and by hand (`python -m bench.constrained`)
    for title in (LONG_SHORT_TITLE, SPECULATIVE_TITLE, CONSTRAINED_TITLE):
        kept = section_of(old, title)
        page = splice_section(page, title, kept) if kept else page
    out.write_text(page)


def compare(plan: Plan, command: str, out: Path, log_dir: Path, observations: str = "") -> Results:
    binary = llama_build.ensure_llama_server()
    gguf = _default_gguf()
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    llama_version = f"{llama_build.server_version(binary)}, vendored in llama-cpp-python {llama_build.SDIST_VERSION} " \
        f"(its CHANGELOG: ggml-org/llama.cpp@{llama_build.llama_commit()})"  # fmt: skip
    started = time.monotonic()
    source = _git_describe()
    results = Results(
        machine=machine.describe(lscpu, llama_version),
        command=command,
        started=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        duration_s=0.0,
        repeats=plan.repeats,
        max_tokens=plan.max_tokens,
        load_before=machine.load_average(),
    )
    with (
        servers.ortserve(log_dir, plan.threads, plan.parallel) as stack,
        servers.llama_server(binary, gguf, log_dir, plan.threads, plan.parallel, plan.llama_ctx) as (llama, llama_url),
    ):
        pids = {
            OURS: {"inference": stack.inference.pid, "bridge": stack.bridge.pid},
            GRPC: {"inference": stack.inference.pid},
            THEIRS: {"llama-server": llama.pid},
        }
        asyncio.run(_run_all(plan, stack, llama_url, results, pids))
        results.peak_rss_mib = {
            OURS: servers.peak_rss_mib(stack.inference.pid),
            "ortserve-bridge": servers.peak_rss_mib(stack.bridge.pid),
            THEIRS: servers.peak_rss_mib(llama.pid),
        }
    results.duration_s = time.monotonic() - started
    results.load_after = machine.load_average()
    results.notes += [
        f"ortserve source: git {source} when the servers started (the processes load their code then; a dirty tree "
        "means uncommitted changes were measured).",
        f"ortserve: `python -m inference_service serve --model default --threads {plan.threads} --max-num-seqs "
        f"{plan.parallel}` + `python -m http_bridge`; llama-server: `-m {gguf.name} -np {plan.parallel} "
        f"-t {plan.threads} -c {plan.llama_ctx}` (ctx {plan.llama_ctx // plan.parallel} per slot), built by "
        "`python -m bench build-llama` (GGML_NATIVE=OFF, explicit ISA switches from /proc/cpuinfo, every AMX "
        "option OFF, OpenMP, static).",
        "All three processes and the load generator (Python, asyncio, httpx / grpc.aio) share the same cores, "
        "so the client's own CPU use is part of every figure, equally for both servers.",
        "Requests per scenario: " + ", ".join(f"{s.requests} at concurrency {s.concurrency}" for s in plan.scenarios)
        + f"; prefill: {plan.prefill_probes} probe(s) per repeat, median; cancel-to-free: {plan.cancel_probes} "
        "probes through the bridge (read 3 chunks, disconnect, poll `ModelService.GetServerLoad` every ~2 ms "
        "until `running_sequences` is 0).",
    ]  # fmt: skip
    write(results, out, observations)
    raw = log_dir / f"results-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}.json"
    raw.write_text(json.dumps(dataclasses.asdict(results), indent=1))  # the raw figures, to re-read or re-render
    log.info("raw results in %s", raw)
    return results


async def _run_all(
    plan: Plan, stack: servers.OrtserveStack, llama_url: str, results: Results, pids: dict[str, dict[str, int]]
) -> None:
    ours_http = HTTPChatClient(stack.base_url, MODEL_ID, name=OURS)
    clients: dict[str, StreamClient] = {
        OURS: ours_http,
        THEIRS: HTTPChatClient(llama_url, MODEL_ID, name=THEIRS),
        GRPC: GRPCChatClient(stack.grpc_target, MODEL_ID, name=GRPC),
    }
    try:
        await _measure(plan, clients, ours_http, stack.grpc_target, results, pids)
    finally:
        for client in clients.values():
            await client.aclose()


def _git_describe() -> str:
    done = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO, capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def _default_gguf() -> Path:
    from inference_service.models import paths
    from inference_service.models.pull import pull

    return pull(paths.default_gguf_dir(), progress=False)
