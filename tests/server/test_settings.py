"""Bad service settings stop start-up with a clear message, not a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from inference_service.server.settings import ServiceSettings


@pytest.mark.parametrize(
    "flag",
    [
        "--kv-cache-mib=-5",
        "--kv-cache-mib=lots",
        "--spinning=maybe",
        "--max-num-seqs=0",
        "--screen-head=often",
        "--keepalive-time-s=0",
        "--keepalive-min-ping-interval-s=soon",
    ],
)
def test_bad_flag_exits_2_with_the_setting_named(flag: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "inference_service", "serve", flag], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    name = flag.split("=")[0].removeprefix("--")
    assert name in done.stderr or name.replace("-", "_") in done.stderr
    assert "Traceback" not in done.stderr


def test_kv_budget_must_not_be_negative(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORTSERVE_KV_CACHE_MIB", "-1")
    with pytest.raises(ValidationError, match="kv_cache_mib"):
        ServiceSettings()
    monkeypatch.setenv("ORTSERVE_KV_CACHE_MIB", "0")
    assert ServiceSettings().kv_cache_mib == 0
