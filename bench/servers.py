"""Start, probe and stop the servers under test (all on 127.0.0.1), and read their peak memory."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.processes import HOST, Process, free_port, start, wait_until


def peak_rss_mib(pid: int) -> float:
    """`VmHWM` (peak resident set size) of a live process, in MiB."""
    return parse_vm_hwm(Path(f"/proc/{pid}/status").read_text())


def parse_vm_hwm(status: str) -> float:
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            value, unit = line.split()[1:3]
            if unit != "kB":
                raise ValueError(f"unexpected VmHWM unit {unit!r}")
            return int(value) / 1024.0
    raise ValueError("no VmHWM line in /proc/PID/status")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a live process has used so far."""
    return parse_proc_stat_cpu(Path(f"/proc/{pid}/stat").read_text(), os.sysconf("SC_CLK_TCK"))


def parse_proc_stat_cpu(stat: str, ticks_per_s: int) -> float:
    # fields after the ")" that closes comm: state is field 3, utime 14 and stime 15 (1-based, proc(5))
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / ticks_per_s


def ready(check: Callable[[], bool], process: Process, timeout_s: float) -> None:
    wait_until(check, process, timeout_s, ignore=(httpx.HTTPError, OSError))


def http_ok(url: str) -> Callable[[], bool]:
    return lambda: httpx.get(url, timeout=2.0).status_code == 200


@dataclass
class OrtserveStack:
    inference: Process
    bridge: Process
    grpc_target: str
    base_url: str


@contextlib.contextmanager
def ortserve(
    log_dir: Path,
    threads: int,
    max_num_seqs: int,
    ready_timeout_s: float = 600.0,
    model: str = "default",
    extra: tuple[str, ...] = (),
) -> Iterator[OrtserveStack]:
    grpc_port, http_port = free_port(), free_port()
    grpc_target, base_url = f"{HOST}:{grpc_port}", f"http://{HOST}:{http_port}"
    inference = start(
        "ortserve-inference",
        [sys.executable, "-m", "inference_service", "serve", "--model", model, "--host", HOST,
         "--port", str(grpc_port), "--threads", str(threads), "--max-num-seqs", str(max_num_seqs), *extra],
        log_dir,
    )  # fmt: skip
    bridge: Process | None = None
    try:
        bridge = start(
            "ortserve-bridge",
            [sys.executable, "-m", "http_bridge", "--inference-target", grpc_target, "--host", HOST,
             "--port", str(http_port), "--log-level", "WARNING"],
            log_dir,
        )  # fmt: skip
        ready(http_ok(f"{base_url}/health/ready"), inference, ready_timeout_s)
        ready(http_ok(f"{base_url}/health/ready"), bridge, 60.0)
        yield OrtserveStack(inference, bridge, grpc_target, base_url)
    finally:
        if bridge is not None:
            bridge.stop()
        inference.stop()


@contextlib.contextmanager
def llama_server(
    binary: Path, gguf: Path, log_dir: Path, threads: int, parallel: int, ctx: int, ready_timeout_s: float = 300.0
) -> Iterator[tuple[Process, str]]:
    port = free_port()
    base_url = f"http://{HOST}:{port}"
    process = start(
        "llama-server",
        [str(binary), "-m", str(gguf), "--host", HOST, "--port", str(port), "-np", str(parallel), "-t", str(threads),
         "-c", str(ctx), "--no-webui"],
        log_dir,
    )  # fmt: skip
    try:
        ready(http_ok(f"{base_url}/health"), process, ready_timeout_s)
        yield process, base_url
    finally:
        process.stop()
