"""Bridge configuration: environment variables prefixed ORTSERVE_BRIDGE_, overridden by CLI flags (generated from
the field descriptions by ortserve_common.settings_flags)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ortserve_common.settings_flags import NoFlag

LogLevel = Literal["CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"]


class BridgeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ORTSERVE_BRIDGE_", extra="ignore")

    host: str = Field(default="127.0.0.1", description="HTTP listen address")
    port: int = Field(default=8000, ge=0, le=65535, description="HTTP listen port")
    inference_target: str = Field(
        default="127.0.0.1:50051",
        description="gRPC target of the inference service: host:port, or a gRPC URI naming several replicas "
        "(dns:///inference:50051, ipv4:10.0.0.1:50051,10.0.0.2:50051), balanced per request (load_balancing)",
    )
    # With routes (here or in model_routes_file), any other model is a 404 and inference_target is unused.
    model_routes: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description="JSON object of model id → gRPC target (same forms as inference_target), "
        'e.g. \'{"a": "h1:50051"}\'; when set, only these models are served',
    )
    model_routes_file: Path | None = Field(
        default=None,
        description="JSON file with the same object as model_routes (both may be given; model_routes wins)",
    )
    load_balancing: Literal["round_robin", "pick_first"] = Field(
        default="round_robin",
        description="gRPC client-side load-balancing policy over the addresses a target resolves to",
    )
    health_check: bool = Field(
        default=True,
        description="gRPC client-side health checking: replicas whose GenerationService is not SERVING get none",
    )
    tls: bool = Field(
        default=False,
        description="TLS to the inference service (on as well when any tls_*_file is set; system roots without a CA "
        "file)",
    )
    tls_ca_file: Path | None = Field(default=None, description="CA certificates that sign the inference service's cert")
    tls_cert_file: Path | None = Field(default=None, description="client certificate (mutual TLS)")
    tls_key_file: Path | None = Field(default=None, description="client private key (mutual TLS)")
    tls_server_name: str | None = Field(
        default=None,
        description="name expected in the service's certificate when it differs from the target's host "
        "(e.g. ipv4: lists)",
    )
    ssl_certfile: Path | None = Field(
        default=None, description="HTTPS certificate of the bridge (uvicorn's ssl_certfile)"
    )
    ssl_keyfile: Path | None = Field(
        default=None, description="HTTPS private key of the bridge (uvicorn's ssl_keyfile)"
    )
    timeout_keep_alive_s: int = Field(
        default=75,
        ge=1,
        description="how long an idle HTTP keep-alive connection stays open (uvicorn's timeout_keep_alive; its "
        "default is 5 s); keep it above the idle timeout of a proxy or load balancer in front (nginx's upstream "
        "keepalive_timeout and AWS ALB's are 60 s), or it may send a request on a connection the bridge is closing "
        "and answer 502",
    )
    request_timeout_s: float = Field(
        default=600.0, gt=0, description="deadline of one Generate call (whole generation, stream or not), seconds"
    )
    first_message_timeout_s: float = Field(
        default=300.0, gt=0, description="streaming: 504 without a first message within this many seconds"
    )
    health_timeout_s: float = Field(default=2.0, gt=0, description="timeout of the readiness probe's health checks")
    # With no keys here and no keys file, authentication is off.
    api_keys: Annotated[list[str], NoDecode, NoFlag] = Field(
        default_factory=list,
        repr=False,
        description="accepted Bearer keys in plain text (development): JSON list or comma-separated; environment only",
    )
    api_keys_file: Path | None = Field(
        default=None,
        description="file of sha256 key hashes and their limits (`python -m http_bridge keys create --file PATH`), "
        "reloaded when it changes; adds to api_keys",
    )
    keys_reload_interval_s: float = Field(
        default=1.0,
        ge=0,
        description="how often a request checks the keys file for changes (mtime, size, inode) and reloads it: "
        "created, revoked and updated keys hold within this time; 0 = on every request",
    )
    # Per-key limits and usage (docs/http_bridge.md): shared by every replica through Redis, else in this process.
    redis_url: str | None = Field(
        default=None,
        repr=False,
        description="Redis for the per-key rate limits and usage shared by all bridge replicas, e.g. "
        "redis://redis:6379/0 (rediss:// for TLS; put a password in the environment, not on the command line); "
        "none = counted in this process only",
    )
    redis_timeout_s: float = Field(
        default=0.25,
        gt=0,
        description="timeout of one Redis call; a failed or slow call falls back to this replica's counters",
    )
    redis_retry_s: float = Field(
        default=2.0,
        gt=0,
        description="after a Redis failure, count in this process for this long before trying Redis again",
    )
    rate_limit_window_s: float = Field(
        default=60.0,
        ge=0.1,
        le=86_400,
        description="the window of the keys' rpm/tpm limits, seconds (60 = per minute as OpenAI; smaller in tests)",
    )
    log_level: LogLevel = Field(default="INFO", description="root log level (uvicorn's too), any case")
    log_format: Literal["json", "text"] = Field(default="json", description="JSON lines or text (development)")
    # Request limits (docs/reliability.md): a body over max_body_bytes is a 413, the others a 400, OpenAI-shaped.
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, description="413 for request bodies larger than this")
    max_messages: int = Field(default=256, ge=1, description="most messages in one chat request")
    max_message_chars: int = Field(
        default=131_072,
        ge=1,
        description="most characters of one message's content (text parts joined), and of each text prompt of "
        "/v1/completions",
    )
    max_stop_sequences: int = Field(default=4, ge=0, description="most stop strings in one request")
    max_stop_chars: int = Field(default=256, ge=1, description="most characters in one stop string")
    max_choices: int = Field(
        default=128,
        ge=1,
        description="most choices in one request: n for chat, n × number of prompts for /v1/completions",
    )
    cors_allow_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="browser origins allowed by CORS (e.g. https://app.example.com, or * for any): JSON list or "
        "comma-separated; empty = CORS off",
    )

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
