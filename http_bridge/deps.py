"""FastAPI dependencies: the shared client, the settings, the fingerprint cache and Bearer-key auth."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from http_bridge.client import InferenceClientProtocol
from http_bridge.errors import AuthenticationError
from http_bridge.fingerprints import FingerprintCache
from http_bridge.keys import KeyStore
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


def get_keys(request: Request) -> KeyStore:
    keys: KeyStore = request.app.state.keys
    return keys


KeysDep = Annotated[KeyStore, Depends(get_keys)]


async def require_api_key(
    keys: KeysDep, authorization: Annotated[str | None, Header(include_in_schema=False)] = None
) -> None:
    """Router-level dependency: with keys configured, require `Authorization: Bearer <key>`."""
    if not keys.enabled:
        return
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise AuthenticationError("Missing or malformed API key: send 'Authorization: Bearer <key>'.")
    if not keys.matches(given.strip()):
        raise AuthenticationError("Incorrect API key provided.")  # never echo the key
