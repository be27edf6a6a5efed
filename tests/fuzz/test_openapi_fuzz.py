"""schemathesis against the bridge's own OpenAPI schema (in-process, fake inference client): every generated
request, valid or not, gets a non-5xx answer, and every error body is in the OpenAI shape."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.core.result import Ok

from http_bridge.app import create_app
from http_bridge.settings import BridgeSettings
from tests.e2e.reliability import is_openai_error
from tests.http_bridge.fakes import FakeClient

CASES_PER_OPERATION = 150
MIN_TOTAL_CASES = 1000
app = create_app(BridgeSettings(_env_file=None, first_message_timeout_s=5, request_timeout_s=30), client=FakeClient())
schema = schemathesis.openapi.from_asgi("/openapi.json", app)
# "GET /health", …; an operation the schema cannot define fails the fuzz test itself
OPERATIONS = {result.ok().label for result in schema.get_all_operations() if isinstance(result, Ok)}


@pytest.fixture(scope="module")
def tried() -> Iterator[dict[str, int]]:
    """Cases per operation; when every operation has been fuzzed, their total must be big enough (the check lives
    with the fuzzing, so it holds whatever else runs, in whatever order, or alone; `-k` picking some skips it)."""
    counts: dict[str, int] = {}
    yield counts
    total = sum(counts.values())
    print(f"schemathesis: {total} cases over {len(counts)} operations: {counts}")
    if counts.keys() >= OPERATIONS:  # the keys also hold the methods an operation does not declare
        assert total >= MIN_TOTAL_CASES


@schema.parametrize()
@settings(
    max_examples=CASES_PER_OPERATION,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
    derandomize=True,  # the same cases every run: a failure here is reproducible
)
def test_no_server_errors_and_openai_shaped_errors(case: schemathesis.Case, tried: dict[str, int]) -> None:
    key = f"{case.method} {case.path}"
    tried[key] = tried.get(key, 0) + 1
    response = case.call()
    assert response.status_code < 500, f"{key} → {response.status_code}: {response.text[:500]}"
    if response.status_code >= 400:
        assert is_openai_error(json.loads(response.text)), f"{key} → {response.status_code}: {response.text[:500]}"
