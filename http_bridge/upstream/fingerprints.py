"""system_fingerprint per model, derived from GetModelInfo's fingerprint and cached for the app's lifetime."""

from __future__ import annotations

import logging

import grpc

from http_bridge.upstream.client import InferenceClientProtocol

logger = logging.getLogger(__name__)

FALLBACK_FINGERPRINT = "fp_ortserve"


def system_fingerprint(model_fingerprint: str) -> str:
    if not model_fingerprint:
        return FALLBACK_FINGERPRINT
    return model_fingerprint if model_fingerprint.startswith("fp_") else f"fp_{model_fingerprint[:16]}"


class FingerprintCache:
    """One instance per app (kept in app.state); only successful look-ups are cached."""

    def __init__(self) -> None:
        self._by_model: dict[str, str] = {}

    async def get(self, client: InferenceClientProtocol, model: str) -> str:
        cached = self._by_model.get(model)
        if cached is not None:
            return cached
        try:
            info = await client.get_model_info(model)
        except grpc.aio.AioRpcError as exc:
            # Generate reports the real error (e.g. unknown model); the fingerprint is best effort.
            logger.debug("GetModelInfo(%r) failed: %s", model, exc.code().name)
            return FALLBACK_FINGERPRINT
        fingerprint = system_fingerprint(info.fingerprint)
        self._by_model[model] = fingerprint
        return fingerprint
