"""What each backend is, known without importing it (its module may import torch, vLLM or openai): the one place
that says which backends load a local model folder (the workflow's inputs, the simulation's GPUs, the plan)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BackendKind:
    """What a backend is, known without importing it (its module may import torch, vLLM or openai)."""

    name: str
    # a model folder (prepared by prepare_model or train) loaded into the job's process and GPUs; the
    # workflow makes the folder an input of the role's jobs and the simulation gives the role GPUs
    loads_local_model: bool


BACKENDS: dict[str, BackendKind] = {
    k.name: k
    for k in (
        BackendKind("hf", loads_local_model=True),
        BackendKind("vllm", loads_local_model=True),
        BackendKind("openai", loads_local_model=False),  # calls an API
        BackendKind("scripted", loads_local_model=False),  # replies from rules
    )
}


def loads_local_model(backend: str | None) -> bool:
    """Whether a role on this backend (roles.<role>.backend) loads a local model folder."""
    kind = BACKENDS.get(backend or "")
    return kind is not None and kind.loads_local_model
