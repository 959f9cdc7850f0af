"""Training stage internals: the `training` config slice, SFT tokenization and loss mask, collator,
attention choice, W&B setup, process launch and the model card. The CLI entry is stargate/stages/train.py.

`TRAINERS` maps `training.method` to its trainer. One driver (sft.py) runs every method: `sft` (the
paper's top-k SFT), `rwr` (reward-weighted SFT, rwr.py) and `dpo` (TRL's DPOTrainer, dpo.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _train(**kwargs: Any) -> dict[str, Any]:
    from .sft import train_sft

    return train_sft(**kwargs)


TRAINERS: dict[str, Callable[..., dict[str, Any]]] = {"sft": _train, "dpo": _train, "rwr": _train}
