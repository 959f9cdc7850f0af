"""The rewards by name: the one list a new reward is added to (its module, its schema enum value, its test)."""

from __future__ import annotations

from ..errors import StargateError
from .base import Reward
from .gold_logprob import GoldLogprob
from .info_gain import InfoGain
from .world import WorldElicited

REWARDS: dict[str, type[Reward]] = {r.name: r for r in (GoldLogprob, InfoGain, WorldElicited)}


def get_reward(name: str) -> type[Reward]:
    try:
        return REWARDS[name]
    except KeyError:
        raise StargateError(f"training.grpo.reward: unknown reward {name!r}; one of {', '.join(REWARDS)}") from None
