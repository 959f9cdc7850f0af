"""Where a training run's inputs come from: m0's weight hash, the tokenizer and chat template the data was written
under (its prompt set), and the hashes train_metrics.json records."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from ..errors import InputError, StargateError
from ..log import get_logger
from ..prompts import load_prompt_set, provenance
from ..records import meta_path, read_meta
from ..tokenization import load_tokenizer
from .data import sha256_file

log = get_logger(__name__)

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def weights_sha256(model_dir: Path) -> str:
    """sha256 of the weight file, or of a `sha256sum`-style manifest of all weight files when sharded."""
    files = sorted(p for p in model_dir.iterdir() if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES))
    if not files:
        raise InputError(model_dir, "no weight files (*.safetensors, *.bin) in the base model folder")
    if len(files) == 1:
        return sha256_file(files[0])
    manifest = "".join(f"{sha256_file(p)}  {p.name}\n" for p in files)
    return hashlib.sha256(manifest.encode()).hexdigest()


def data_prompt_set(data: Path) -> str | None:
    """The prompt set the SFT data was written under (its .meta.json), checked to load; None if unrecorded."""
    name = read_meta(data).get("prompt_set")
    if not name:
        return None
    try:
        load_prompt_set(name)
    except StargateError as exc:
        raise InputError(
            meta_path(data),
            f"names prompt set '{name}', which cannot be loaded ({exc})",
            fix="rebuild the SFT data with the sft_data stage under a prompt set of this checkout",
        ) from None
    return name


def training_tokenizer(base_model: str | Path, data: Path) -> tuple[Any, dict[str, Any], str]:
    """The base model's tokenizer as `stargate.tokenization.load_tokenizer` gives it under the data's prompt set
    (paper_v1: the pinned Mistral tokenizer; it is also what the trained model's folder gets), with the set's
    chat template; the provenance hashes for train_metrics.json; and the set's SFT label rule."""
    name = data_prompt_set(data)
    tokenizer = load_tokenizer(base_model, name)
    provenance_ = use_prompt_set_template(tokenizer, data)
    return tokenizer, provenance_, load_prompt_set(name).sft_labels if name else "char_offsets"


def use_prompt_set_template(tokenizer: Any, data: Path) -> dict[str, Any]:
    """Render SFT examples with the chat template of the prompt set the data was written under, if it ships one
    (paper_v1: Mistral v0.2's March-2024 template). Returns the provenance hashes for train_metrics.json."""
    name = data_prompt_set(data)
    if not name:
        return provenance_without_set(tokenizer)
    prompt_set = load_prompt_set(name)
    if prompt_set.chat_template is not None:
        tokenizer.chat_template = prompt_set.chat_template
        log.info("SFT examples rendered with prompt set %s's own chat template", name)
    return provenance(name, tokenizer)


def provenance_without_set(tokenizer: Any) -> dict[str, Any]:
    from ..prompts import tokenizer_sha256

    template = getattr(tokenizer, "chat_template", None)
    return {
        "prompt_set": None,
        "chat_template_sha256": hashlib.sha256(template.encode()).hexdigest() if isinstance(template, str) else None,
        "tokenizer_sha256": tokenizer_sha256(tokenizer),
    }
