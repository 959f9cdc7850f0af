"""Backends are bound to roles in config: {"backend": "hf" | "vllm" | "openai", "model": ..., "options": {...}}."""

from __future__ import annotations

from typing import Any

from ..errors import StargateError
from .base import Backend, Prompt, Sampling, Score

__all__ = ["Backend", "Prompt", "Sampling", "Score", "load_backend"]


def load_backend(role: dict[str, Any], model: str, stage: str | None = None) -> Backend:
    """Instantiate the backend named in a role config. `model` is a local folder (hf, vllm) or an API model name;
    `stage` labels the API ledger lines (openai)."""
    kind = role.get("backend")
    options = dict(role.get("options") or {})
    if kind == "hf":
        from .hf import HFBackend

        return HFBackend(model, **options)
    if kind == "vllm":
        from .vllm_backend import VLLMBackend

        return VLLMBackend(model, **options)
    if kind == "openai":
        from .openai_backend import OpenAIBackend

        return OpenAIBackend(model, options, stage=stage)
    raise StargateError(f"unknown backend '{kind}' (choose hf, vllm or openai)")
