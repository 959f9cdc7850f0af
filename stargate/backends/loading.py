"""Instantiate the backend a role config names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import StargateError
from ..modelfolder import check_model_folder
from .base import Backend
from .kinds import loads_local_model
from .options import OPTIONS, parse_options


def _hub_repo_id(model: str) -> bool:
    """`org/name` (what transformers would look up on the Hub) rather than a local path: a path that is not
    there (`/abs/...`, `./x`, `resources/models/x`) is reported as a missing folder, not a Hub error."""
    return not model.startswith(("/", ".", "~")) and model.count("/") == 1


def load_backend(
    role: dict[str, Any], model: str, gpus: int = 0, stage: str | None = None, prompt_set: str | None = None
) -> Backend:
    """Instantiate the backend named in a role config. `model` is a local folder (hf, vllm), an API model name
    (openai) or a label (scripted); `gpus` the GPUs given to the job; `stage` labels API ledger lines;
    `prompt_set` the run's prompt set, whose pinned tokenizer (if any) a local backend tokenizes with
    (stargate.tokenization.load_tokenizer)."""
    kind = role.get("backend")
    if kind not in OPTIONS:
        raise StargateError(f"unknown backend '{kind}' (choose {', '.join(OPTIONS)}); fix roles.<role>.backend")
    if kind == "openai":
        from .openai_backend import OpenAIBackend

        # the openai backend parses its options itself (it drops nulls the `api:` defaults may carry)
        return OpenAIBackend(model, role.get("options"), stage=stage)
    options = parse_options(OPTIONS[kind], role.get("options"), kind)
    if loads_local_model(kind) and (Path(model).is_dir() or not _hub_repo_id(model)):
        check_model_folder(model, f"rebuild it: delete the folder and rerun (prepare_model or train makes {model})")
    if kind == "hf":
        from .hf import HFBackend

        return HFBackend(model, options, gpus=gpus, prompt_set=prompt_set)
    if kind == "vllm":
        from .vllm_backend import VLLMBackend

        return VLLMBackend(model, options, gpus=gpus, prompt_set=prompt_set)
    from .scripted import ScriptedBackend

    return ScriptedBackend(model, options, gpus=gpus)
