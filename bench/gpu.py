"""`python -m bench gpu`: the GPU check as one command (docs/deployment.md, "Verifying a GPU host").

On a machine with an NVIDIA GPU and onnxruntime-gpu (`--device cuda`, the default):
  1. converts the default model for the device (fp16 for CUDA, fp32 for CPU; cached);
  2. loads it in this process, runs the warm-up generation under onnxruntime's profiler and fails when any
     attention, matmul or norm node ran anywhere but on the device's execution provider;
  3. runs the e2e tests that matter (OpenAI client stream/non-stream, n > 1, logprobs, cancellation, batching, gRPC)
     against a real service on the device (ORTSERVE_TEST_DEVICE makes their fixtures start it with --device);
  4. benchmarks the stack through the HTTP bridge at 1 / 16 / 64 streams;
and writes what it found to --out (default docs/benchmarks-gpu.md). `--device cpu` runs the same steps on the CPU EP.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import platform
import shlex
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from bench.clients import GenParams, HTTPChatClient
from bench.load import Scenario, run_scenario
from bench.report import fmt, table
from bench.servers import ortserve
from bench.stats import summarize

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parent.parent
E2E_TESTS = [
    "tests/e2e/test_openai_client.py",
    "tests/e2e/test_parameters.py",
    "tests/e2e/test_cancellation.py",
    "tests/e2e/test_grpc.py",
]


@dataclass
class GpuReport:
    command: str
    device: str
    started: str
    machine: list[str] = field(default_factory=list)
    placement: list[list[str]] = field(default_factory=list)
    placement_ok: bool | None = None
    tests: str = "not run"
    tests_ok: bool | None = None
    bench: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.placement_ok) and bool(self.tests_ok) and bool(self.bench)

    def markdown(self) -> str:
        lines = [
            f"# GPU check ({self.device})",
            "",
            f"Command: `{self.command}` — started {self.started}; result: **{'PASS' if self.ok else 'FAIL'}**.",
            "",
            "## Machine",
            "",
            *(f"- {m}" for m in self.machine),
            "",
            "## Where the warm-up's nodes ran (onnxruntime profile)",
            "",
            table(["op", "provider: nodes"], self.placement) if self.placement else "not measured",
            "",
            f"Attention, matmul and norm nodes all on the device's EP: {self.placement_ok}",
            "",
            "## e2e tests against the service on the device",
            "",
            f"`pytest {' '.join(E2E_TESTS)}` → {self.tests}",
            "",
            "## Throughput through the HTTP bridge (128 output tokens a request, greedy)",
            "",
            table(["streams", "requests", "errors", "output tok/s", "TTFT p50 ms", "ITL p50 ms"], self.bench)
            if self.bench
            else "not measured",
            "",
            *self.notes,
        ]
        return "\n".join(lines) + "\n"


def _machine(device: str) -> list[str]:
    import onnxruntime as ort

    facts = [f"python {platform.python_version()}, onnxruntime {ort.__version__}: {ort.get_available_providers()}"]
    if device == "cuda":
        try:
            smi = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=30,
            )
            facts.append(f"GPU: {smi.stdout.strip() or smi.stderr.strip()}")
        except (OSError, subprocess.TimeoutExpired) as e:
            facts.append(f"nvidia-smi: {e}")
    facts.append(f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    return facts


def _placement(folder: Path, device: str, report: GpuReport) -> None:
    from inference_service.engine.core import EngineCore
    from inference_service.engine.loader import load_runner, warm_up
    from inference_service.engine.placement import PlacementError, check_placement, summary
    from inference_service.engine.runner import RunnerOptions
    from inference_service.engine.scheduler import SchedulerConfig
    from inference_service.engine.tokenizer import Tokenizer
    from inference_service.models.folder import load_model_config

    config = load_model_config(folder)
    options = RunnerOptions(device=device, num_slots=2, slot_capacity=256, profile_warm_up=True)
    runner = load_runner(config, options)
    warm_up(EngineCore(runner, Tokenizer.from_dir(folder), config.eos_token_ids, SchedulerConfig()))
    runs = runner.placement() or []
    report.placement = [[op, ", ".join(f"{p}: {n}" for p, n in by.items())] for op, by in summary(runs).items()]
    try:
        check_placement(runs, runner.provider)
        report.placement_ok = True
    except PlacementError as e:
        report.placement_ok = False
        report.notes.append(f"Placement: {e}")


def _tests(device: str, report: GpuReport, log_dir: Path) -> None:
    env = {**os.environ, "ORTSERVE_TEST_DEVICE": device, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", *E2E_TESTS]
    with (log_dir / "e2e.log").open("w") as out:
        done = subprocess.run(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    tail = (log_dir / "e2e.log").read_text().strip().splitlines()
    report.tests = tail[-1] if tail else f"exit {done.returncode}"
    report.tests_ok = done.returncode == 0


async def _bench(base_url: str, concurrency: list[int], requests_per_stream: int, report: GpuReport) -> None:
    client = HTTPChatClient(base_url, "smollm2-135m-instruct")
    params = GenParams(max_tokens=128)
    try:
        await run_scenario(client, Scenario(1, 2, 120), "warm-" + uuid.uuid4().hex[:8], params)
        for conc in concurrency:
            scenario = Scenario(conc, conc * requests_per_stream, 300)
            s = summarize(await run_scenario(client, scenario, uuid.uuid4().hex[:8], params), conc)
            report.bench.append(
                [str(conc), str(s.requests), str(s.errors), fmt(s.output_tok_s), fmt(s.ttft_p50_ms), fmt(s.itl_p50_ms)]
            )
            log.info("%d streams: %.1f tok/s", conc, s.output_tok_s)
    finally:
        await client.aclose()


def run(
    device: str,
    out: Path,
    log_dir: Path,
    concurrency: list[int],
    requests_per_stream: int,
    run_tests: bool,
    argv: list[str],
) -> bool:
    from inference_service.models.prepare import default_model_dir

    report = GpuReport(
        command="python -m bench " + shlex.join(argv),
        device=device,
        started=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )
    log_dir.mkdir(parents=True, exist_ok=True)
    report.machine = _machine(device)
    precision = "fp16" if device == "cuda" else "fp32"
    folder = default_model_dir(progress=False, precision=precision)
    report.machine.append(f"model: {folder} ({precision})")
    try:
        started = time.monotonic()
        _placement(folder, device, report)
        log.info("placement checked in %.1f s: %s", time.monotonic() - started, report.placement_ok)
        if run_tests:
            started = time.monotonic()
            _tests(device, report, log_dir)
            log.info("e2e tests in %.1f s: %s", time.monotonic() - started, report.tests)
        else:
            report.tests, report.tests_ok = "skipped (--no-tests)", True
        threads = 0 if device == "cpu" else 2
        slots = max(concurrency)
        with ortserve(log_dir, threads, slots, model=str(folder), extra=("--device", device)) as stack:
            asyncio.run(_bench(stack.base_url, concurrency, requests_per_stream, report))
    except Exception as e:  # the report says what failed; the exit status too
        log.exception("GPU check failed")
        report.notes.append(f"Failed: {type(e).__name__}: {e}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report.markdown())
    log.info("wrote %s (%s)", out, "PASS" if report.ok else "FAIL")
    return report.ok
