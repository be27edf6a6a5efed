"""Liveness and readiness (no authentication, plain JSON bodies)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from http_bridge.deps import ClientDep, SettingsDep

router = APIRouter(tags=["health"])


@router.get("/health")
@router.get("/health/live")
async def live() -> dict[str, str]:
    """The bridge process is up; says nothing about the inference service."""
    return {"status": "ok"}


@router.get("/health/ready")
async def ready(client: ClientDep, settings: SettingsDep) -> JSONResponse:
    """200 when every inference target (every model route) has a replica whose GenerationService is SERVING."""
    if await client.health(settings.health_timeout_s):
        return JSONResponse({"status": "ready"})
    return JSONResponse({"status": "not_ready"}, status_code=503)
