"""Real processes: the default model served under the hosted APIs' names (--served-model-name), reached at every
base URL of the public API (/v1, /, /v1/inference) with the official Python and Node clients, behind API keys; and
every example of the product brief (docs: /work/shared/product-brief) with only its host and key changed."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import DEVICE
from tests.e2e.conftest import MODEL_ID, create_key, run_node_tests, running_stack

pytestmark = pytest.mark.e2e
BASES = ["/v1", "", "/v1/inference"]
# The product brief's names: Ektos, Avangenio (three models), GravixLayer; plus a name with a slash.
HOSTED = ["llama-3.1-8b-instruct", "spark", "radiance", "supernova", "llama3.1:8b-instruct-fp16"]
NAMES = [MODEL_ID, *HOSTED, "org/model"]
COLON, SLASH = "llama3.1:8b-instruct-fp16", "org/model"
HELLO: Any = [{"role": "user", "content": "Hello"}]


@dataclass
class Served:
    root: str  # bridge root URL, auth on
    key: str


@pytest.fixture(scope="module")
def served(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    logs = tmp_path_factory.mktemp("aliases")
    key = create_key(logs / "keys.jsonl", "aliases")
    args = ["--model", str(model_dir), "--served-model-name", *NAMES, "--max-num-seqs", "4", "--max-model-len", "2048"]
    bridge_args = ["--api-keys-file", str(logs / "keys.jsonl")]
    with running_stack(logs, [*args, "--device", DEVICE], bridge_args) as stack:
        yield Served(stack.base_url, key)


def client(served: Served, base: str, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=served.root + base, api_key=key or served.key, max_retries=0, timeout=300)


@pytest.mark.parametrize("base", BASES, ids=lambda base: base or "/")
def test_official_python_client_at_every_base(served: Served, base: str) -> None:
    sdk = client(served, base)
    assert [model.id for model in sdk.models.list()] == NAMES
    for name in (COLON, SLASH, "radiance"):
        assert sdk.models.retrieve(name).id == name
    full = sdk.chat.completions.create(model=COLON, messages=HELLO, max_tokens=8, temperature=0)
    assert full.model == COLON and full.choices[0].message.content
    stream = sdk.chat.completions.create(model=SLASH, messages=HELLO, max_tokens=8, temperature=0, stream=True)
    chunks = list(stream)
    assert {chunk.model for chunk in chunks} == {SLASH}
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == full.choices[0].message.content
    text = sdk.completions.create(model=SLASH, prompt="The capital of France is", max_tokens=4)
    assert text.model == SLASH and text.usage is not None and text.usage.completion_tokens == 4


def test_unknown_names_and_bad_keys_get_the_same_answer_at_every_base(served: Served) -> None:
    auth = {"Authorization": f"Bearer {served.key}"}
    found, denied = [], []
    for base in BASES:
        chat = httpx.post(
            f"{served.root}{base}/chat/completions", headers=auth, json={"model": "nope", "messages": HELLO}
        )
        text = httpx.post(f"{served.root}{base}/completions", headers=auth, json={"model": "nope", "prompt": "x"})
        retrieve = httpx.get(f"{served.root}{base}/models/no/such:model", headers=auth)
        assert [r.status_code for r in (chat, text, retrieve)] == [404, 404, 404]
        found.append([r.json() for r in (chat, text)])
        assert retrieve.json()["error"]["code"] == "model_not_found"
        wrong = httpx.get(f"{served.root}{base}/models", headers={"Authorization": "Bearer wrong"})
        missing = httpx.post(f"{served.root}{base}/chat/completions", json={"model": COLON, "messages": HELLO})
        assert (wrong.status_code, missing.status_code) == (401, 401)
        denied.append(wrong.json())
        with pytest.raises(openai.AuthenticationError):
            client(served, base, key="wrong").models.list()
    assert found[0][0]["error"]["code"] == "model_not_found"
    assert all(bodies == found[0] for bodies in found) and all(body == denied[0] for body in denied)


# The product brief's examples: (document, base URL path, model, messages), each sent as its curl and its Python.
EXAMPLES = [
    ("ektos", "/v1/", "llama-3.1-8b-instruct", [{"role": "user", "content": "Hello, how can you help me?"}]),
    (
        "avangenio",
        "",
        "radiance",
        [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "How many days are in a year?"},
        ],
    ),
    ("gravixlayer", "/v1/inference", "llama3.1:8b-instruct-fp16", [{"role": "user", "content": "Hello"}]),
]


@pytest.mark.parametrize(("doc", "base", "model", "messages"), EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_product_brief_curl_examples(served: Served, doc: str, base: str, model: str, messages: Any) -> None:
    url = served.root + base.rstrip("/") + "/chat/completions"
    headers = {"Authorization": f"Bearer {served.key}", "Content-Type": "application/json"}
    reply = httpx.post(url, headers=headers, json={"model": model, "messages": messages}, timeout=300)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert (body["object"], body["model"], body["choices"][0]["message"]["role"]) == (
        "chat.completion",
        model,
        "assistant",
    )
    assert body["choices"][0]["finish_reason"] in ("stop", "length") and body["system_fingerprint"].startswith("fp_")
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    if doc == "avangenio":  # its parameter table names /v1/chat/completions as well
        again = {"model": model, "messages": messages, "max_tokens": 2}
        assert httpx.post(served.root + "/v1/chat/completions", headers=headers, json=again, timeout=300).is_success


@pytest.mark.parametrize(("doc", "base", "model", "messages"), EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_product_brief_python_examples(served: Served, doc: str, base: str, model: str, messages: Any) -> None:
    sent = model + " " if doc == "ektos" else model  # Ektos' Python sample sends "llama-3.1-8b-instruct "
    completion = client(served, base).chat.completions.create(model=sent, messages=messages)
    assert completion.choices[0].message.role == "assistant" and completion.choices[0].message.content
    assert completion.model == model
    dumped = completion.model_dump()  # GravixLayer prints json.dumps(completion.model_dump())
    assert dumped["choices"][0]["message"]["refusal"] is None and dumped["choices"][0]["logprobs"] is None


def test_official_node_client_at_every_base(served: Served) -> None:
    run_node_tests("bases.test.mjs", {"ROOT_URL": served.root, "API_KEY": served.key, "MODEL_ID": MODEL_ID})
