from __future__ import annotations

import httpx
import pytest

from inference_service.api.v1 import model_pb2
from tests.http_bridge.fakes import MODEL_ID, FakeClient

pytestmark = pytest.mark.anyio


async def test_list_models(http: httpx.AsyncClient, fake: FakeClient) -> None:
    fake.models.append(model_pb2.ModelInfo(id="local/other", created=5))
    response = await http.get("/v1/models")
    assert response.status_code == 200
    assert response.json() == {
        "object": "list",
        "data": [
            {"id": MODEL_ID, "object": "model", "created": 1700000000, "owned_by": "ortserve"},
            {"id": "local/other", "object": "model", "created": 5, "owned_by": "ortserve"},
        ],
    }


async def test_retrieve_model_with_slash_in_id(http: httpx.AsyncClient) -> None:
    response = await http.get(f"/v1/models/{MODEL_ID}")
    assert response.status_code == 200
    assert response.json()["id"] == MODEL_ID


async def test_retrieve_unknown_model_is_404(http: httpx.AsyncClient) -> None:
    response = await http.get("/v1/models/no/such-model")
    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "message": "model 'no/such-model' is not served",
            "type": "invalid_request_error",
            "param": None,
            "code": "model_not_found",
        }
    }
    assert (await http.get("/v1/models")).status_code == 200


@pytest.mark.parametrize("path", ["/health", "/health/live"])
async def test_live(http: httpx.AsyncClient, fake: FakeClient, path: str) -> None:
    fake.healthy = False
    response = await http.get(path)
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


@pytest.mark.parametrize(("healthy", "status", "body"), [(True, 200, "ready"), (False, 503, "not_ready")])
async def test_ready(http: httpx.AsyncClient, fake: FakeClient, healthy: bool, status: int, body: str) -> None:
    fake.healthy = healthy
    response = await http.get("/health/ready")
    assert (response.status_code, response.json()) == (status, {"status": body})
