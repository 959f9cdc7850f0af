"""`world`: the learning world's ground truth, the share of the task's relevant attributes the user revealed
(stargate/world/programs.py `elicited`). Only meaningful when the world's programs play the user."""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import StargateError
from ..world.programs import elicited
from .base import Reward, Rollout


class WorldElicited(Reward):
    name = "world"

    def __call__(self, rollouts: Sequence[Rollout]) -> list[float]:
        try:
            return [elicited(r.turns, r.persona, r.task) for r in rollouts]
        except (KeyError, ValueError) as exc:
            raise StargateError(
                f"reward world: pair {rollouts[0].pair if rollouts else '?'} is not a pair of the learning world "
                f"({exc!r}); use it with config/world.yaml's data, or choose gold_logprob or info_gain"
            ) from None
