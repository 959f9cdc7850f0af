"""Backends are bound to roles in config: {"backend": "hf" | "vllm" | "openai" | "scripted", "model": ...,
"options": {...}}. A role's options are parsed into the backend's typed options (backends/options.py);
runtime facts that are not config (the job's GPU count, the stage name) are separate arguments."""

from .base import Backend, GenerationStats, Prompt, Sampling, Score
from .kinds import BACKENDS, BackendKind, loads_local_model
from .loading import load_backend

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendKind",
    "GenerationStats",
    "Prompt",
    "Sampling",
    "Score",
    "load_backend",
    "loads_local_model",
]
