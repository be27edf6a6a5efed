"""The playground's static files: served without a key, with the right types, and self-contained (no CDN)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from http_bridge.app import create_app
from http_bridge.routers.playground import ASSETS, STATIC_DIR
from http_bridge.settings import BridgeSettings
from tests.http_bridge.fakes import FakeClient

pytestmark = pytest.mark.anyio

PAGES = {
    "/playground": "text/html",
    "/playground/assets/playground.css": "text/css",
    "/playground/assets/playground.js": "text/javascript",
    "/playground/assets/markdown.js": "text/javascript",
}


@pytest.fixture(params=["auth off", "auth on"])
async def bridge(request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncClient]:
    keys = ["secret-key"] if request.param == "auth on" else []
    app = create_app(BridgeSettings(_env_file=None, api_keys=keys), client=FakeClient())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bridge") as client:
        yield client


async def test_root_redirects_to_the_playground(bridge: httpx.AsyncClient) -> None:
    response = await bridge.get("/")
    assert response.status_code == 307
    assert response.headers["location"] == "/playground"
    assert (await bridge.get("/", follow_redirects=True)).url.path == "/playground"


@pytest.mark.parametrize(("path", "media_type"), PAGES.items())
async def test_page_and_assets_are_served_without_a_key(bridge: httpx.AsyncClient, path: str, media_type: str) -> None:
    response = await bridge.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == f"{media_type}; charset=utf-8"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert response.text.strip()


async def test_the_page_references_every_asset_and_only_those(bridge: httpx.AsyncClient) -> None:
    html = (await bridge.get("/playground")).text
    referenced = set(re.findall(r'(?:src|href)="([^"]+)"', html))
    assert referenced == {f"/playground/assets/{name}" for name in ASSETS}
    assert {path.name for path in STATIC_DIR.iterdir()} == {"playground.html", *ASSETS}  # nothing unserved


@pytest.mark.parametrize("name", ["nope.js", "..%2Fapp.py", "playground.html", "%2E%2E%2F%2E%2E%2Fpyproject.toml"])
async def test_unknown_assets_are_openai_style_404s(bridge: httpx.AsyncClient, name: str) -> None:
    response = await bridge.get(f"/playground/assets/{name}")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_the_api_itself_still_needs_the_key_when_auth_is_on() -> None:
    app = create_app(BridgeSettings(_env_file=None, api_keys=["secret-key"]), client=FakeClient())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bridge") as client:
        assert (await client.get("/playground")).status_code == 200
        assert (await client.get("/v1/models")).status_code == 401


@pytest.mark.parametrize("path", sorted(STATIC_DIR.iterdir()), ids=lambda path: path.name)
def test_static_files_load_nothing_from_other_hosts(path: Path) -> None:
    text = path.read_text()
    # Any absolute URL would be a CDN, font or tracker: the page must work offline, from this origin only.
    assert re.findall(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, flags=re.IGNORECASE) == []
    assert "@import" not in text


def test_playground_is_not_in_the_openapi_document() -> None:
    schema = create_app(BridgeSettings(_env_file=None), client=FakeClient()).openapi()
    assert not {"/", "/playground"} & set(schema["paths"])
    assert not any(path.startswith("/playground") for path in schema["paths"])
