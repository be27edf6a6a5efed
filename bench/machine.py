"""Description of the machine a benchmark ran on."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path

from bench.report import Machine


def lscpu_model(lscpu: str) -> str:
    for line in lscpu.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "Model name":
            return value.strip()
    return "unknown"


def meminfo_gib(meminfo: str) -> float:
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024**2
    return float("nan")


def onnxruntime_version() -> str:
    for dist in ("onnxruntime-gpu", "onnxruntime"):
        try:
            return f"{metadata.version(dist)} ({dist})"
        except metadata.PackageNotFoundError:
            continue
    return "not installed"


def describe(lscpu: str, llama_cpp: str) -> Machine:
    return Machine(
        cpu=lscpu_model(lscpu),
        cores=os.cpu_count() or 0,
        memory_gib=meminfo_gib(Path("/proc/meminfo").read_text()),
        onnxruntime=onnxruntime_version(),
        llama_cpp=llama_cpp,
        python=platform.python_version(),
        kernel=platform.release(),
    )


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())
