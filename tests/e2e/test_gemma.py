"""The second real model, Gemma 3 270M (base, Q4_K_M), served end to end: inference service + bridge + the official
OpenAI client on /v1/completions, greedy output equal to the float64 reference's (streamed and not), and chat
refused clearly: the GGUF has no chat template."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from tokenizers import Tokenizer

from tests.e2e.conftest import running_stack
from tests.models.reference_decoder import ReferenceDecoder

pytestmark = pytest.mark.e2e
MODEL_ID = "gemma3-270m"
PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def base_url(gemma_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    args = ["--model", str(gemma_model_dir), "--model-id", MODEL_ID, "--max-num-seqs", "4", "--max-model-len", "1024"]
    args += ["--device", "cpu", "--threads", "1"]
    with running_stack(tmp_path_factory.mktemp("gemma"), args, ready_timeout=300) as stack:
        yield stack.base_url


@pytest.fixture(scope="module")
def client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=300)


def test_greedy_completion_is_the_reference_continuation(
    client: openai.OpenAI, gemma_gguf: Path, gemma_model_dir: Path
) -> None:
    tokenizer = Tokenizer.from_file(str(gemma_model_dir / "tokenizer.json"))
    ids = tokenizer.encode(PROMPT, add_special_tokens=True).ids
    expected = tokenizer.decode(ReferenceDecoder.from_gguf(gemma_gguf).greedy(ids, 10))
    reply = client.completions.create(model=MODEL_ID, prompt=PROMPT, temperature=0, max_tokens=10)
    assert reply.choices[0].text == expected
    assert reply.usage is not None and reply.usage.prompt_tokens == len(ids)  # <bos> included, as the GGUF asks
    streamed = client.completions.create(model=MODEL_ID, prompt=PROMPT, temperature=0, max_tokens=10, stream=True)
    assert "".join(c.choices[0].text for c in streamed if c.choices) == expected


def test_chat_without_a_template_is_a_clear_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "Hi"}], max_tokens=4)
    assert "chat template" in str(err.value) and "--chat-template" in str(err.value)
    # the service keeps serving
    usage = client.completions.create(model=MODEL_ID, prompt=PROMPT, max_tokens=2).usage
    assert usage is not None and usage.completion_tokens == 2
