"""FastAPI dependencies: the shared client, the settings, the fingerprint cache and Bearer-key auth."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Header, Request

from http_bridge.client import InferenceClientProtocol
from http_bridge.errors import AuthenticationError
from http_bridge.fingerprints import FingerprintCache
from http_bridge.settings import BridgeSettings


def get_client(request: Request) -> InferenceClientProtocol:
    client: InferenceClientProtocol = request.app.state.client
    return client


def get_settings(request: Request) -> BridgeSettings:
    settings: BridgeSettings = request.app.state.settings
    return settings


def get_fingerprints(request: Request) -> FingerprintCache:
    cache: FingerprintCache = request.app.state.fingerprints
    return cache


ClientDep = Annotated[InferenceClientProtocol, Depends(get_client)]
SettingsDep = Annotated[BridgeSettings, Depends(get_settings)]
FingerprintsDep = Annotated[FingerprintCache, Depends(get_fingerprints)]


def _key_matches(given: str, keys: list[str]) -> bool:
    # Compare against every key (no early exit) so timing does not reveal which key nearly matched.
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(given.encode(), key.encode())
    return matched


async def require_api_key(
    settings: SettingsDep, authorization: Annotated[str | None, Header(include_in_schema=False)] = None
) -> None:
    """Router-level dependency: with api_keys configured, require `Authorization: Bearer <key>`."""
    if not settings.api_keys:
        return
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise AuthenticationError("Missing API key: send 'Authorization: Bearer <key>'.")
    if not _key_matches(given.strip(), settings.api_keys):
        raise AuthenticationError("Incorrect API key provided.")
