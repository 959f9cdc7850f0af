"""The offline methods (trained on the loop's own conversations: stages select and sft_data) by name. The stages
that only ever handle these ask this list, so their code fingerprint does not carry an online method's rollout
machinery (backends, rewards). registry.py adds the online ones."""

from __future__ import annotations

from ...errors import StargateError
from .base import TrainingMethod
from .dpo import DPO
from .rwr import RWR
from .sft import SFT

OFFLINE_METHODS: dict[str, TrainingMethod] = {m.name: m for m in (SFT(), DPO(), RWR())}


def get_offline_method(name: str) -> TrainingMethod:
    try:
        return OFFLINE_METHODS[name]
    except KeyError:
        raise StargateError(
            f"training.method {name!r} is not trained on the loop's data; one of {', '.join(OFFLINE_METHODS)}"
        ) from None
