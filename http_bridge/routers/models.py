"""GET /models and GET /models/{model_id} under every base of the public API (routers/public.py); ids may
contain '/' and ':', and a model served under several names is listed once per name."""

from __future__ import annotations

from fastapi import APIRouter

from http_bridge.accounts.rate_limits import ModelAccessError
from http_bridge.deps import ApiKeyDep, ClientDep
from http_bridge.schemas.models import Model, ModelList

router = APIRouter(tags=["models"])


@router.get("/models")
async def list_models(client: ClientDep, key: ApiKeyDep) -> ModelList:
    # Every served model (that the key may use); with model routes, the union over the routed targets
    # (upstream/routing.py).
    infos = await client.list_models()
    return ModelList(
        data=[Model(id=info.id, created=info.created) for info in infos if key is None or key.allows(info.id)]
    )


@router.get("/models/{model_id:path}")
async def retrieve_model(model_id: str, client: ClientDep, key: ApiKeyDep) -> Model:
    if key is not None and not key.allows(model_id):
        raise ModelAccessError(model_id)
    # Unknown id: 404 model_not_found, from upstream/routing.py (no route) or from the service (gRPC NOT_FOUND,
    # errors.py).
    info = await client.get_model_info(model_id)
    return Model(id=info.id or model_id, created=info.created)
