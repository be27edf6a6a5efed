"""FastAPI dependencies: the shared client, the settings, the fingerprint cache, Bearer-key auth and the key."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import Depends, Header, Request

from http_bridge.accounting import API_KEY_STATE
from http_bridge.client import InferenceClientProtocol
from http_bridge.errors import AuthenticationError, BridgeError
from http_bridge.fingerprints import FingerprintCache
from http_bridge.key_reload import KeyRing
from http_bridge.keys import KeyRecord, KeyStore
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
    ring: KeyRing = request.app.state.keys
    return ring.current()  # re-read when the keys file changed (key_reload.py)


KeysDep = Annotated[KeyStore, Depends(get_keys)]


async def require_api_key(
    request: Request, keys: KeysDep, authorization: Annotated[str | None, Header(include_in_schema=False)] = None
) -> None:
    """Router-level dependency: with keys configured, require `Authorization: Bearer <key>` of a usable key; the
    key's record goes to `request.state.api_key` (None while authentication is off)."""
    setattr(request.state, API_KEY_STATE, None)
    if not keys.enabled:
        return
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise AuthenticationError("Missing or malformed API key: send 'Authorization: Bearer <key>'.")
    record = keys.find(given.strip())
    if record is None:
        raise AuthenticationError("Incorrect API key provided.")  # never echo the key
    if record.disabled:
        raise AuthenticationError("This API key has been revoked.")
    if record.expired(time.time()):
        raise AuthenticationError("This API key has expired.")
    setattr(request.state, API_KEY_STATE, record)


def current_key(request: Request) -> KeyRecord | None:
    """The authenticated key (after require_api_key); None while authentication is off."""
    record: KeyRecord | None = getattr(request.state, API_KEY_STATE, None)
    return record


ApiKeyDep = Annotated[KeyRecord | None, Depends(current_key)]


async def require_admin(key: ApiKeyDep, keys: KeysDep) -> None:
    """Admin routes (GET /v1/usage): a key with `"admin": true`; open only while authentication is off."""
    if keys.enabled and (key is None or not key.admin):
        raise BridgeError(
            "This endpoint needs an admin API key (`keys create --admin`).",
            status=403,
            type="permission_error",
            code="insufficient_permissions",
        )
