"""Inference service configuration: environment (ORTSERVE_*) and CLI flags, one validated object."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from inference_service.models.paths import CACHE_DIR_HELP, CacheDir, default_cache_dir


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ORTSERVE_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(50051, ge=0, le=65535)
    model: str = Field(
        "default",
        description='"default", a model name (`python -m inference_service pull --list`: pulled and converted when '
        "needed), or a model folder",
    )
    model_id: str = Field("", description="served model name; default: the registry name or the folder's name")
    served_model_name: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="names the model answers to (vLLM's flag: `--served-model-name a b`; env: JSON list or "
        "comma-separated), e.g. a hosted API's aliases; the first is the id in logs and metrics; replaces the "
        "default name, follows model_id when both are given",
    )
    chat_template: Path | None = Field(
        None,
        description="Jinja chat template file that replaces the model's (as in transformers' chat_template.jinja); "
        "a base model without one answers chat requests with 400",
    )
    cache_dir: CacheDir = Field(default_factory=default_cache_dir, description=CACHE_DIR_HELP)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    device_id: int = 0
    threads: int = Field(0, ge=0, description="ORT intra-op threads; 0 = one per core")
    spinning: bool = Field(
        True, description="ORT worker threads busy-wait between the ops of a forward pass (never between passes)"
    )
    max_num_seqs: int = Field(16, ge=1, le=1024, description="KV slots = sequences decoded together")
    max_model_len: int = Field(0, ge=0, description="tokens per KV slot; 0 = the model's context length")
    kv_cache_mib: int = Field(
        2048,
        ge=0,
        description="KV cache budget (MiB) of the running sequences together: admission waits for it, the newest "
        "sequence is preempted and recomputed when running ones outgrow it; at least one full slot; 0 = every slot "
        "full (max_num_seqs × max_model_len)",
    )
    max_batched_tokens: int = Field(512, ge=16, description="tokens per engine step (decode rows + prefill)")
    long_prefill_token_threshold: int = Field(
        128,
        ge=0,
        description="fair prefill: a prompt runs at most this many tokens per step, and one with more pending is long: "
        "the oldest long prompt and short prompts share each step, so short prompts get their first token while a "
        "long one prefills; 0 = oldest first, as much as the step's budget allows (docs/architecture.md)",
    )
    max_num_partial_prefills: int = Field(
        4,
        ge=2,
        description="prompts that get a prefill chunk in the same step (with long_prefill_token_threshold); at least "
        "2, so that short prompts can pass a long one",
    )
    speculative: Literal["ngram", "none"] = Field(
        "ngram",
        description="speculative decoding by prompt lookup: a sequence whose last tokens occurred before in its prompt "
        "or output drafts what followed, verified in one pass (same output as without it); none = off",
    )
    speculative_ngram: int = Field(3, ge=1, le=8, description="tokens a draft's lookup matches")
    speculative_max_draft: int = Field(8, ge=1, le=16, description="tokens drafted per step at most")
    speculative_max_batch: int = Field(
        2,
        ge=1,
        description="sequences draft only while at most this many are running: a verification pass per drafting "
        "sequence pays at low occupancy only (docs/benchmarks.md)",
    )
    dense_min_rows: int = Field(
        2, ge=0, description="CPU: steps with at least this many token rows run the fp32 dense twin; 0 = never"
    )
    screen_head: bool = Field(
        True,
        description="CPU: a tied Q8_0 LM head runs as int8 bounds on every logit; only the tokens that can still be "
        "chosen are computed exactly (greedy / top-k rows without logprobs; others run the fp32 head)",
    )
    prefix_cache_entries: int = Field(
        8, ge=0, description="prompts whose KV is kept for reuse by later prompts sharing a prefix (CPU); 0 = off"
    )
    max_waiting: int = Field(1024, ge=0, description="requests waiting for a slot before RESOURCE_EXHAUSTED")
    max_queue_wait_s: float = Field(
        0.0, ge=0, description="fail a request with DEADLINE_EXCEEDED after waiting this long for a slot; 0 = never"
    )
    fault_injection: bool = Field(
        False, description="testing only: requests whose id starts with 'fault-inject' fail inside an engine step"
    )
    metrics_port: int = Field(0, ge=0, le=65535, description="Prometheus /metrics port on the same host; 0 = off")
    tls_cert_file: Path | None = Field(None, description="PEM server certificate (chain): serve gRPC over TLS")
    tls_key_file: Path | None = Field(None, description="PEM private key of tls_cert_file")
    tls_client_ca_file: Path | None = Field(
        None, description="PEM CA certificates: require client certificates signed by them (mutual TLS)"
    )
    log_format: Literal["json", "text"] = "json"
    shutdown_grace_s: float = Field(10.0, ge=0)
    max_connection_age_s: float = Field(
        0.0,
        ge=0,
        description="close each client connection after this long (gRPC GOAWAY; open streams finish within "
        "max_connection_age_grace_s), so that clients resolving a dns:/// target re-resolve and reach replicas added "
        "since they connected (Kubernetes scale-up); 0 = never",
    )
    max_connection_age_grace_s: float = Field(
        900.0, ge=0, description="how long streams open on a connection closed by max_connection_age_s may still run"
    )
    keepalive_time_s: float = Field(
        30.0,
        gt=0,
        description="how often the service pings each client connection; a client that does not answer within "
        "keepalive_timeout_s (its host down, a network partition) is dropped, its requests cancelled and KV freed",
    )
    keepalive_timeout_s: float = Field(10.0, gt=0, description="how long the service waits for a ping's answer")
    keepalive_min_ping_interval_s: float = Field(
        10.0,
        gt=0,
        description="the shortest interval between a client's keepalive pings that the service accepts, also on a "
        "connection with no call or only idle streams (a bridge's health watch); a client pinging more often gets "
        "GOAWAY too_many_pings, failing its calls. The bridge pings every 30 s",
    )
    log_level: str = "INFO"

    @field_validator("served_model_name", mode="before")
    @classmethod
    def _split_names(cls, value: object) -> object:
        if isinstance(value, str):  # env var or one flag value; several flag values arrive as a list
            text = value.strip()
            return json.loads(text) if text.startswith("[") else [n.strip() for n in text.split(",") if n.strip()]
        return value

    @field_validator("served_model_name")
    @classmethod
    def _check_names(cls, names: list[str]) -> list[str]:
        for name in names:
            if not name or name != name.strip():
                raise ValueError(f"a served model name may not be empty or start or end with a space: {name!r}")
        return names

    def served_names(self, default: str) -> list[str]:
        """Every name the model answers to, the primary first, without repeats."""
        names = [self.model_id] if self.model_id else []
        names += self.served_model_name
        return list(dict.fromkeys(names or [default]))

    @model_validator(mode="after")
    def _check_tls(self) -> Self:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("tls_client_ca_file (mutual TLS) needs tls_cert_file and tls_key_file")
        return self
