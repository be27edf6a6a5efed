"""CORS for browsers on other origins: off unless BridgeSettings.cors_allow_origins lists some (or `*`)."""

from __future__ import annotations

from typing import Any


def cors_options(origins: list[str]) -> dict[str, Any]:
    """Starlette CORSMiddleware options: the OpenAI API's methods and headers, no cookies (keys are Bearer headers)."""
    return {
        "allow_origins": origins,
        "allow_methods": ["GET", "POST"],
        "allow_headers": ["authorization", "content-type", "x-request-id"],
        "expose_headers": ["x-request-id", "retry-after"],
        "allow_credentials": False,
        "max_age": 600,
    }
