"""The training methods by name: the one list a new method is added to (its module, its schema block, its test)."""

from __future__ import annotations

from typing import Any

from ...errors import StargateError
from .base import TrainingMethod
from .dpo import DPO
from .rwr import RWR
from .sft import SFT

METHODS: dict[str, TrainingMethod] = {m.name: m for m in (SFT(), DPO(), RWR())}


def get_method(name: str) -> TrainingMethod:
    try:
        return METHODS[name]
    except KeyError:
        raise StargateError(f"training.method: unknown method {name!r}; one of {', '.join(METHODS)}") from None


def method_blocks() -> list[str]:
    """Every method's knob block under `training` (config keys that belong to one method only)."""
    return [m.block for m in METHODS.values() if m.block]


def selecting_methods() -> list[str]:
    return [name for name, m in METHODS.items() if m.selects]


def training_for_method(training: dict[str, Any]) -> dict[str, Any]:
    """The `training` slice without the other methods' blocks: what the train rule and the summary record, so
    changing another method's knob (rwr.temperature under dpo) retrains nothing."""
    own = get_method(training["method"]).block
    others = set(method_blocks()) - {own}
    return {k: v for k, v in training.items() if k not in others}
