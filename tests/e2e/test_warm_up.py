"""A model that loads but cannot generate never reports ready: the service's warm-up generation fails, it exits."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import grpc
import pytest

from tests.e2e.conftest import free_port, grpc_serving, start

pytestmark = pytest.mark.e2e


def broken_folder(model_dir: Path, into: Path) -> Path:
    """The default model with a genai_config that misstates the KV heads: every session loads, no pass can run."""
    folder = into / "wrong-kv-heads"
    folder.mkdir()
    for path in model_dir.iterdir():
        if path.name != "genai_config.json":
            (folder / path.name).symlink_to(path)
    config = json.loads((model_dir / "genai_config.json").read_text())
    config["model"]["decoder"]["num_key_value_heads"] = 2
    (folder / "genai_config.json").write_text(json.dumps(config))
    return folder


def test_a_model_that_cannot_generate_exits_before_it_is_ready(model_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    target = f"127.0.0.1:{port}"
    args = ["-m", "inference_service", "serve", "--model", str(broken_folder(model_dir, tmp_path))]
    flags = [
        "--port",
        str(port),
        "--max-model-len",
        "256",
        "--threads",
        "1",
        "--dense-min-rows",
        "0",
        "--screen-head",
        "false",
    ]
    process = start("broken", [*args, *flags], tmp_path)
    try:
        deadline = time.monotonic() + 120
        while process.popen.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(grpc.RpcError):  # not listening: as it should be
                assert not grpc_serving(target), "reported SERVING although it cannot generate"
            time.sleep(0.2)
        assert process.popen.poll() == 1, process.tail()
        log = process.tail(200)
        assert "not serving" in log and "warm-up failed" in log and "past_key_values.0.key" in log, log
        assert "Traceback" not in log, log
    finally:
        process.stop()
