"""The training methods by name: an offline method is added to offline.py's list, an online one here (with its
module, its schema block and its test)."""

from __future__ import annotations

from typing import Any

from ...errors import StargateError
from .base import TrainingMethod
from .grpo import GRPO
from .offline import OFFLINE_METHODS

# offline methods first (their order is the schema's), then the online ones
METHODS: dict[str, TrainingMethod] = {**OFFLINE_METHODS, **{m.name: m for m in (GRPO(),)}}


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


def offline_methods() -> list[str]:
    """Methods trained on the loop's own data (stage sft_data); the others play rollouts (rollout_prompts)."""
    return [name for name, m in METHODS.items() if not m.online]


def online_methods() -> list[str]:
    return [name for name, m in METHODS.items() if m.online]


def training_for_method(training: dict[str, Any]) -> dict[str, Any]:
    """The `training` slice without the other methods' blocks: what the train rule and the summary record, so
    changing another method's knob (rwr.temperature under dpo) retrains nothing."""
    own = get_method(training["method"]).block
    others = set(method_blocks()) - {own}
    return {k: v for k, v in training.items() if k not in others}
