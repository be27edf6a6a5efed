"""The web chat playground: static files only (no authentication); the page itself calls the public /v1 API."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, RedirectResponse

router = APIRouter(tags=["playground"], include_in_schema=False)

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
# name → media type: a fixed list, so no path from the URL ever reaches the file system
ASSETS = {
    "playground.css": "text/css; charset=utf-8",
    "playground.js": "text/javascript; charset=utf-8",
    "markdown.js": "text/javascript; charset=utf-8",
}
# Only this origin's scripts, styles and API: model output rendered into the page cannot load or run anything.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/playground", status_code=307)


@router.get("/playground")
async def page() -> FileResponse:
    return FileResponse(STATIC_DIR / "playground.html", media_type="text/html; charset=utf-8", headers=HEADERS)


@router.get("/playground/assets/{name}")
async def asset(name: str) -> FileResponse:
    media_type = ASSETS.get(name)
    if media_type is None:
        raise HTTPException(404, f"No playground asset named {name!r}.")  # OpenAI error shape via errors.py
    return FileResponse(STATIC_DIR / name, media_type=media_type, headers=HEADERS)
