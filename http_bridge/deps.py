"""FastAPI dependencies, as `Annotated` aliases that return what they resolve: the app's client, settings,
fingerprint cache, metrics and accounting, the keys in force, and the request's authenticated key."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import Depends, Header, Request

from http_bridge.accounts.accounting import Accounting
from http_bridge.accounts.key_ring import KeyRing
from http_bridge.accounts.keys import KeyRecord, KeyStore
from http_bridge.accounts.rate_limits import current_key_window
from http_bridge.errors import AuthenticationError, BridgeError
from http_bridge.metrics import BridgeMetrics
from http_bridge.settings import BridgeSettings
from http_bridge.upstream.client import InferenceClientProtocol
from http_bridge.upstream.fingerprints import FingerprintCache


def get_client(request: Request) -> InferenceClientProtocol:
    client: InferenceClientProtocol = request.app.state.client
    return client


def get_settings(request: Request) -> BridgeSettings:
    settings: BridgeSettings = request.app.state.settings
    return settings


def get_fingerprints(request: Request) -> FingerprintCache:
    cache: FingerprintCache = request.app.state.fingerprints
    return cache


def get_metrics(request: Request) -> BridgeMetrics:
    metrics: BridgeMetrics = request.app.state.metrics
    return metrics


def get_accounting(request: Request) -> Accounting:
    accounting: Accounting = request.app.state.accounting
    return accounting


ClientDep = Annotated[InferenceClientProtocol, Depends(get_client)]
SettingsDep = Annotated[BridgeSettings, Depends(get_settings)]
FingerprintsDep = Annotated[FingerprintCache, Depends(get_fingerprints)]
MetricsDep = Annotated[BridgeMetrics, Depends(get_metrics)]
AccountingDep = Annotated[Accounting, Depends(get_accounting)]


def get_keys(request: Request) -> KeyStore:
    ring: KeyRing = request.app.state.keys
    return ring.current()  # re-read when the keys file changed (accounts/key_ring.py)


KeysDep = Annotated[KeyStore, Depends(get_keys)]


async def authenticate(
    keys: KeysDep, authorization: Annotated[str | None, Header(include_in_schema=False)] = None
) -> KeyRecord | None:
    """The public router's dependency: with keys configured, require `Authorization: Bearer <key>` of a usable key
    and return its record (None while authentication is off). FastAPI resolves it once per request, so routes
    that take ApiKeyDep get the same record."""
    if not keys.enabled:
        return None
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
    current_key_window().key = record  # the response's x-ratelimit-* headers (middleware.py)
    return record


ApiKeyDep = Annotated[KeyRecord | None, Depends(authenticate)]


async def require_admin(key: ApiKeyDep, keys: KeysDep) -> None:
    """Admin routes (GET /v1/usage): a key with `"admin": true`; open only while authentication is off."""
    if keys.enabled and (key is None or not key.admin):
        raise BridgeError(
            "This endpoint needs an admin API key (`keys create --admin`).",
            status=403,
            type="permission_error",
            code="insufficient_permissions",
        )
