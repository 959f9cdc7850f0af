"""The typed options of each backend: one frozen dataclass per backend, mirroring `config/schema.yaml`.

The schema's `$defs.<backend>_options` is the documented source (types, defaults, descriptions);
`tests/test_options.py` checks that every field here has the schema's name and default, so the two
cannot drift. `parse_options` turns a role's `options` mapping into the dataclass and refuses any key
the backend does not know, naming the key and the accepted ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from ..errors import StargateError


@dataclass(frozen=True)
class HFOptions:
    dtype: str = "auto"
    device: str = "auto"
    batch_size: int = 16
    attn_implementation: str | None = None
    tokenizer: str = "prompt_set"


@dataclass(frozen=True)
class VLLMOptions:
    dtype: str = "auto"
    tensor_parallel_size: int | None = None
    gpu_memory_utilization: float | None = None
    max_model_len: int | None = None
    enforce_eager: bool | None = None
    score_chunk_tokens: int = 131_072
    kv_cache_space_gb: float | None = None
    engine_args: dict[str, Any] = field(default_factory=dict)
    tokenizer: str = "prompt_set"
    seeding: str = "per_request"


@dataclass(frozen=True)
class OpenAIOptions:
    base_url: str | None = None
    api_key_env: str | None = None
    organization_env: str | None = None
    azure_endpoint: str | None = None
    azure_endpoint_env: str | None = None
    azure_deployment_env: str | None = None
    api_version: str | None = None
    refusals: str = "fail"
    max_concurrency: int = 8
    max_retries: int = 6
    timeout_s: float = 120.0
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    cache_dir: str | None = None
    budget_usd: float | None = None
    budget_scope: str = "total"
    prices: dict[str, float] | None = None
    n_per_request: bool = True
    max_tokens_param: str = "max_tokens"
    send_seed: bool = True
    batch: bool = False
    batch_poll_s: float = 30.0
    batch_max_wait_s: float = 26 * 3600.0
    batch_endpoint: str | None = None


@dataclass(frozen=True)
class ScriptedOptions:
    reply: str = "{last}"
    rules: list[dict[str, str | None]] = field(default_factory=list)
    rules_file: str | None = None
    score_per_token: float = -1.0
    program: str | None = None


OPTIONS: dict[str, type] = {
    "hf": HFOptions,
    "vllm": VLLMOptions,
    "openai": OpenAIOptions,
    "scripted": ScriptedOptions,
}

OptionsT = TypeVar("OptionsT")


def parse_options(cls: type[OptionsT], raw: dict[str, Any] | None, backend: str) -> OptionsT:
    """`raw` as a `cls`; an unknown key is an error on every backend (config: roles.<role>.options)."""
    if isinstance(raw, cls):
        return raw
    if raw is not None and not isinstance(raw, dict):
        raise StargateError(
            f"the {backend} backend's options must be a mapping, got {type(raw).__name__}; "
            "fix roles.<role>.options in the config"
        )
    raw = dict(raw or {})
    known = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise StargateError(
            f"unknown option(s) {', '.join(unknown)} for the {backend} backend "
            f"(accepted: {', '.join(known)}); fix roles.<role>.options in the config"
        )
    return cls(**raw)
