"""`python -m bench gpu --device cpu`: the GPU check's own path, run on the CPU EP as far as it goes (its e2e tests
are the suite's own, so they are left out here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def test_gpu_check_runs_on_the_cpu_ep_and_writes_its_report(model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "gpu-check.md"
    cmd = [sys.executable, "-m", "bench", "gpu", "--device", "cpu", "--no-tests", "--concurrency", "1"]
    cmd += ["--requests-per-stream", "1", "--out", str(out), "--log-dir", str(tmp_path / "logs")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = out.read_text()
    assert "result: **PASS**" in report
    assert "| GroupQueryAttention | CPUExecutionProvider: 30 |" in report
    assert "| MatMulNBits | CPUExecutionProvider: 120 |" in report
    row = next(line for line in report.splitlines() if line.startswith("| 1 |"))
    assert row.split("|")[3].strip() == "0"  # no errors
