"""Bridge configuration: environment variables prefixed ORTSERVE_BRIDGE_, overridden by CLI flags."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

LogLevel = Literal["CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"]


class BridgeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ORTSERVE_BRIDGE_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    # gRPC target of the inference service: host:port, or a gRPC URI naming several replicas
    # (dns:///inference:50051, ipv4:10.0.0.1:50051,10.0.0.2:50051), balanced per request (load_balancing).
    inference_target: str = "127.0.0.1:50051"
    # Model id → gRPC target (same forms as inference_target). Env: a JSON object. When set (here or in
    # model_routes_file) only these models are served: any other model is a 404 and inference_target is unused.
    model_routes: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    # JSON file with the same object as model_routes (both may be given; model_routes wins per model).
    model_routes_file: Path | None = None
    # gRPC client-side load-balancing policy over the addresses a target resolves to.
    load_balancing: Literal["round_robin", "pick_first"] = "round_robin"
    # gRPC client-side health checking: replicas whose GenerationService is not SERVING get no requests.
    health_check: bool = True
    # TLS to the inference service: on when tls is true or any tls_*_file is set (system roots without a CA file).
    tls: bool = False
    tls_ca_file: Path | None = None
    # Client certificate and key for mutual TLS.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # Name expected in the service's certificate when it differs from the target's host (e.g. ipv4: lists).
    tls_server_name: str | None = None
    # HTTPS on the bridge's own port (passed to uvicorn as ssl_certfile / ssl_keyfile).
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
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
    log_format: Literal["json", "text"] = "json"
    # Request limits (docs/reliability.md): a body over max_body_bytes is a 413, the others a 400, OpenAI-shaped.
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    max_messages: int = Field(default=256, ge=1)
    # Characters of one message's content (text parts joined), and of each text prompt of /v1/completions.
    max_message_chars: int = Field(default=131_072, ge=1)
    max_stop_sequences: int = Field(default=4, ge=0)
    max_stop_chars: int = Field(default=256, ge=1)
    # Choices of one request: n for chat, n × number of prompts for /v1/completions (each is one sequence).
    max_choices: int = Field(default=128, ge=1)
    # Browser origins allowed by CORS (e.g. https://app.example.com, or * for any). Empty = CORS off.
    # Env: JSON list or comma-separated.
    cors_allow_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("api_keys", "cors_allow_origins", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [key.strip() for key in text.split(",") if key.strip()]
        return value

    @field_validator("model_routes", mode="before")
    @classmethod
    def _parse_routes(cls, value: object) -> object:
        if isinstance(value, str):  # env var or CLI flag: JSON text; empty = no routes
            return json.loads(value) if value.strip() else {}
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_tls_pairs(self) -> Self:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together (client certificate for mutual TLS)")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("ssl_certfile and ssl_keyfile go together (HTTPS on the bridge)")
        return self

    @property
    def tls_enabled(self) -> bool:
        return self.tls or self.tls_ca_file is not None or self.tls_cert_file is not None
