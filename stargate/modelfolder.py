"""A local Hugging Face model folder has what every backend and the trainer load: checked up front, so a
missing file is named with its folder instead of surfacing as a transformers traceback (or, for a
tokenizer, as a silent download attempt)."""

from __future__ import annotations

from pathlib import Path

from .errors import InputError

# any one of these makes a loadable tokenizer / set of weights
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")
WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.safetensors.index.json")


def check_model_folder(path: str | Path, fix: str) -> None:
    folder = Path(path)
    if not folder.is_dir():
        raise InputError(folder, "model folder does not exist", fix=fix)

    def present(name: str) -> bool:
        return (folder / name).is_file()  # False for a link whose target is gone

    missing = []
    if not present("config.json"):
        missing.append("config.json")
    if not any(present(n) for n in TOKENIZER_FILES):
        missing.append(f"a tokenizer ({' or '.join(TOKENIZER_FILES)})")
    if not any(p.is_file() for pattern in WEIGHT_PATTERNS for p in folder.glob(pattern)):
        missing.append("weights (*.safetensors or *.bin)")
    if missing:
        raise InputError(folder, f"model folder lacks {', '.join(missing)} (missing, or a broken link)", fix=fix)
