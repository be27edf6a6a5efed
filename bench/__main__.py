"""`python -m bench run|compare|long-short|speculative|build-llama` (see docs/benchmarks.md)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import shlex
import signal
import sys
import uuid
from pathlib import Path

from bench.clients import GenParams, GRPCChatClient, HTTPChatClient, StreamClient
from bench.load import Scenario, measure_prefill, prefill_tok_s, run_scenario
from bench.report import SUMMARY_HEADER, fmt, table
from bench.stats import Summary, summarize

REPO = Path(__file__).resolve().parent.parent


def _concurrencies(text: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or min(values) < 1 or max(values) > 256:
        raise argparse.ArgumentTypeError("concurrency levels must be within 1..256")
    return values


def _summary_row(name: str, s: Summary) -> list[str]:
    return [
        name, str(s.concurrency), fmt(s.output_tok_s), fmt(s.ttft_p50_ms, 0), fmt(s.ttft_p95_ms, 0),
        fmt(s.itl_p50_ms), fmt(s.itl_p95_ms), fmt(s.prompt_tokens_mean, 0), f"{s.requests} / {s.errors}",
    ]  # fmt: skip


async def _run(args: argparse.Namespace) -> None:
    client: StreamClient = GRPCChatClient(args.grpc, args.model) if args.grpc else HTTPChatClient(args.url, args.model)
    params = GenParams(max_tokens=args.max_tokens)
    rows = []
    try:
        await run_scenario(client, Scenario(1, 1, 120), "warm-" + uuid.uuid4().hex[:8], params)
        for conc in args.concurrency:
            scenario = Scenario(conc, conc * args.requests_per_stream, args.deadline_s)
            summary = summarize(await run_scenario(client, scenario, uuid.uuid4().hex[:8], params), conc)
            rows.append(_summary_row(client.name, summary))
        if args.prefill:
            rate = prefill_tok_s(await measure_prefill(client, uuid.uuid4().hex[:8], args.prefill))
            print(f"prefill (~1,000-token prompt): {fmt(rate)} tok/s")
    finally:
        await client.aclose()
    print(table(["target", *SUMMARY_HEADER], rows))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="load one running server (OpenAI HTTP or ortserve gRPC) and print a table")
    target = run.add_mutually_exclusive_group(required=True)
    target.add_argument("--url", help="base URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8000")
    target.add_argument("--grpc", help="host:port of ortserve's inference service")
    run.add_argument("--model", default="smollm2-135m-instruct")
    run.add_argument("--concurrency", type=_concurrencies, default=[1, 4, 16, 32])
    run.add_argument("--requests-per-stream", type=int, default=2, help="requests = this × concurrency")
    run.add_argument("--max-tokens", type=int, default=128)
    run.add_argument("--deadline-s", type=float, default=300.0, help="wall-clock bound of each concurrency level")
    run.add_argument("--prefill", type=int, default=0, help="number of ~1,000-token prefill probes (0 = none)")

    cmp = sub.add_parser("compare", help="start ortserve and llama-server, run interleaved, write docs/benchmarks.md")
    cmp.add_argument("--quick", action="store_true", help="smoke run: fewer levels, requests and repeats")
    cmp.add_argument("--repeats", type=int, help="interleaved repeats per scenario (default 2; quick 1)")
    cmp.add_argument(
        "--out", type=Path, help="default docs/benchmarks.md; with --quick bench/.cache/quick/benchmarks.md"
    )
    cmp.add_argument("--log-dir", type=Path, default=REPO / "bench" / ".cache" / "logs")

    cmp.add_argument("--observations", type=Path, help="markdown appended as an Observations section")

    render = sub.add_parser("render", help="rewrite docs/benchmarks.md (+ .png) from a compare run's raw JSON")
    render.add_argument("results", type=Path, help="bench/.cache/logs/results-*.json")
    render.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.md")
    render.add_argument("--observations", type=Path, help="markdown appended as an Observations section")

    sub.add_parser("build-llama", help="build llama-server from the llama-cpp-python sdist into bench/.cache")

    ls = sub.add_parser("long-short", help="one ~6,500-token prompt + short streaming requests arriving during it")
    ls.add_argument("--repeats", type=int, default=1, help="interleaved repeats per server (1..10)")
    ls.add_argument("--shorts", type=int, default=10, help="short requests, one a second from 1 s after the long one")
    ls.add_argument("--baseline", action="store_true", help="also ortserve with --long-prefill-token-threshold 0")
    ls.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.md", help="page whose section it writes")
    ls.add_argument("--log-dir", type=Path, default=REPO / "bench" / ".cache" / "logs")
    ls.add_argument("--note", default="", help="a line about the run's conditions, added to the section")

    spec = sub.add_parser("speculative", help="copy-heavy and standard scenarios, speculation on / off, llama-server")
    spec.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.md", help="page whose section it writes")
    spec.add_argument("--log-dir", type=Path, default=REPO / "bench" / ".cache" / "logs")

    gpu = sub.add_parser("gpu", help="the GPU check: convert, node placement, e2e tests, 1/16/64-stream benchmark")
    gpu.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    gpu.add_argument("--out", type=Path, help="default docs/benchmarks-gpu.md (cuda) or bench/.cache/gpu-check-cpu.md")
    gpu.add_argument("--concurrency", type=_concurrencies, help="default 1,16,64 (cuda) or 1,4 (cpu)")
    gpu.add_argument("--requests-per-stream", type=int, default=2)
    gpu.add_argument("--no-tests", action="store_true", help="skip the e2e tests (placement and benchmark only)")
    gpu.add_argument("--log-dir", type=Path, default=REPO / "bench" / ".cache" / "gpu-logs")

    args = parser.parse_args(argv)
    # SIGTERM / SIGINT (even when started in the background) unwind normally, so the servers we started are stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if args.command == "run":
        asyncio.run(_run(args))
    elif args.command == "render":
        import json

        from bench.compare import write
        from bench.report import results_from_json

        observations = args.observations.read_text() if args.observations else ""
        write(results_from_json(json.loads(args.results.read_text())), args.out, observations)
        print(args.out)
    elif args.command == "gpu":
        from bench import gpu as gpu_check

        cuda = args.device == "cuda"
        out = args.out or (
            REPO / "docs" / "benchmarks-gpu.md" if cuda else REPO / "bench" / ".cache" / "gpu-check-cpu.md"
        )
        ok = gpu_check.run(
            args.device,
            out,
            args.log_dir,
            args.concurrency or ([1, 16, 64] if cuda else [1, 4]),
            args.requests_per_stream,
            not args.no_tests,
            sys.argv[1:] if argv is None else argv,
        )
        print(out)
        sys.exit(0 if ok else 1)
    elif args.command == "long-short":
        from bench import long_short

        scenario = long_short.LongShortPlan(shorts=max(1, args.shorts), repeats=max(1, min(args.repeats, 10)))
        command = "python -m bench " + shlex.join(sys.argv[1:] if argv is None else argv)
        print(long_short.measure(scenario, args.log_dir, args.baseline, command, args.out, args.note))
    elif args.command == "speculative":
        from bench import speculative

        command = "python -m bench " + shlex.join(sys.argv[1:] if argv is None else argv)
        print(speculative.measure(speculative.SpecPlan(), args.log_dir, command, args.out))
    elif args.command == "build-llama":
        from bench import llama_build

        binary = llama_build.ensure_llama_server()
        print(binary, llama_build.server_version(binary))
    else:
        import dataclasses

        from bench.compare import Plan, compare

        plan = Plan.quick() if args.quick else Plan.full()
        if args.repeats:
            plan = dataclasses.replace(plan, repeats=max(1, min(args.repeats, 10)))
        command = "python -m bench " + shlex.join(sys.argv[1:] if argv is None else argv)
        out = args.out or (
            REPO / "bench" / ".cache" / "quick" / "benchmarks.md" if args.quick else REPO / "docs" / "benchmarks.md"
        )
        observations = args.observations.read_text() if args.observations else ""
        compare(plan, command, out, args.log_dir, observations)
        print(out)


if __name__ == "__main__":
    main()
