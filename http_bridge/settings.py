"""Bridge configuration: environment variables prefixed ORTSERVE_BRIDGE_, overridden by CLI flags."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

LogLevel = Literal["CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"]


class BridgeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ORTSERVE_BRIDGE_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    inference_target: str = "127.0.0.1:50051"
    # Deadline of one Generate call (whole generation, stream or not).
    request_timeout_s: float = Field(default=600.0, gt=0)
    # How long a streaming request may wait for its first message before it fails with 504.
    first_message_timeout_s: float = Field(default=300.0, gt=0)
    # Timeout of the readiness probe's gRPC health check.
    health_timeout_s: float = Field(default=2.0, gt=0)
    # Accepted Bearer keys in plain text (development). Env: JSON list or comma-separated.
    # With no keys here and no keys file, authentication is off.
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list, repr=False)
    # File of sha256 key hashes (`python -m http_bridge keys create --file PATH`); adds to api_keys.
    api_keys_file: Path | None = None
    log_level: LogLevel = "INFO"

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [key.strip() for key in text.split(",") if key.strip()]
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value
