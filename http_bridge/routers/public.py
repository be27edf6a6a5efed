"""The public OpenAI-compatible API, one router mounted at every base URL that hosted APIs give their clients.

`/v1` (OpenAI's), `` (bases without `/v1`: `https://host/chat/completions`) and `/v1/inference` (bases such as
`https://host/v1/inference/chat/completions`). Auth is this router's dependency, so it holds at every base; the
OpenAPI document lists the `/v1` paths once (openapi.py names the other bases).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI

from http_bridge.deps import authenticate
from http_bridge.routers import chat, completions, models, usage

DOCUMENTED_BASE = "/v1"
BASES = (DOCUMENTED_BASE, "", "/v1/inference")

router = APIRouter(dependencies=[Depends(authenticate)])
router.include_router(models.router)
router.include_router(chat.router)
router.include_router(completions.router)
router.include_router(usage.router)


def include(app: FastAPI) -> None:
    """Mount the public API at every base (FastAPI copies the routes; the definitions stay one)."""
    for base in BASES:
        app.include_router(router, prefix=base, include_in_schema=base == DOCUMENTED_BASE)
