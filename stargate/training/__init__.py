"""Training stage internals: the `training` config slice, SFT tokenization and loss mask, collator,
attention choice, W&B setup, process launch and the model card. The CLI entry is stargate/stages/train.py.

`TRAINERS` maps `training.method` to its trainer; a `dpo` entry comes in its own issue.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _sft(**kwargs: Any) -> dict[str, Any]:
    from .sft import train_sft

    return train_sft(**kwargs)


TRAINERS: dict[str, Callable[..., dict[str, Any]]] = {"sft": _sft}
