"""Folders made by ONNX Runtime GenAI's model builder load unchanged and serve through the bridge on the CPU EP:
`-e cpu -p int4` (fp32 activations, 4-bit MatMulNBits), `-e cuda -p fp16` and `-e cuda -p int4` (fp16 activations
and KV: the graphs the CUDA EP runs), with the official OpenAI client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.builder_folders import builder_folder
from tests.e2e.conftest import Process, free_port, grpc_serving, start, wait_until

pytestmark = pytest.mark.e2e

QUESTION: list[ChatCompletionMessageParam] = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module", params=[("int4", "cpu"), ("fp16", "cuda"), ("int4", "cuda")], ids=lambda p: "-".join(p))
def client(
    request: pytest.FixtureRequest, gguf_path: Path, model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[openai.OpenAI]:
    precision, provider = request.param
    folder = builder_folder(gguf_path, model_dir, precision, provider)
    logs = tmp_path_factory.mktemp(f"builder-{provider}-{precision}")
    grpc_port, http_port = free_port(), free_port()
    target = f"127.0.0.1:{grpc_port}"
    args = ["-m", "inference_service", "serve", "--model", str(folder), "--model-id", "builder"]
    args += ["--device", "cpu", "--threads", "1"]
    inference = start(
        "inference", [*args, "--port", str(grpc_port), "--max-num-seqs", "4", "--max-model-len", "1024"], logs
    )
    processes: list[Process] = [inference]
    try:
        wait_until(lambda: grpc_serving(target, "inference_service.api.v1.GenerationService"), inference)
        bridge = start("bridge", ["-m", "http_bridge", "--inference-target", target, "--port", str(http_port)], logs)
        processes.append(bridge)
        base = f"http://127.0.0.1:{http_port}"
        wait_until(lambda: httpx.get(f"{base}/health/ready", timeout=2).status_code == 200, bridge)
        yield openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0)
    finally:
        for process in reversed(processes):
            process.stop()


def test_builder_folder_answers_through_the_bridge(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="builder", messages=QUESTION, temperature=0, max_tokens=16)
    text = reply.choices[0].message.content or ""
    assert "Paris" in text, text
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage is not None and reply.usage.completion_tokens > 0

    stream = client.chat.completions.create(
        model="builder",
        messages=QUESTION,
        temperature=0,
        max_tokens=16,
        stream=True,
    )
    chunks = list(stream)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text
    assert chunks[-1].choices[0].finish_reason == reply.choices[0].finish_reason
