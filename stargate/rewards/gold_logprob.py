"""`gold_logprob`: the paper's reward, m0's summed log p(gold | conversation) in the qa-experimental condition,
the same context the score stage builds (prompts.scoring_context) and the same scorer (the scorer role on m0)."""

from __future__ import annotations

from collections.abc import Sequence

from ..config import SELECTION_CONDITION
from ..errors import StargateError
from .base import Reward, Rollout


class GoldLogprob(Reward):
    name = "gold_logprob"
    needs_gold = True
    needs_scorer = True

    def __call__(self, rollouts: Sequence[Rollout]) -> list[float]:
        missing = [r.pair for r in rollouts if r.gold is None]
        if missing:
            raise StargateError(f"reward gold_logprob: pair {missing[0]} has no gold response (dropped by the oracle)")
        contexts = [
            self.prompts.scoring_context(SELECTION_CONDITION, r.name, r.persona, r.task, r.turns) for r in rollouts
        ]
        return [s.logprob for s in self.scorer.score(contexts, [r.gold for r in rollouts])]
