"""What a reward is: a number per finished conversation, computed from the conversation, its persona-task pair
and (for some rewards) the Oracle's gold response, with m0 as the only model it may load. The online method
(grpo) maximises one; the world's own measure checks the others against ground truth.

A reward is a subclass of `Reward` in its own module of this package, listed in registry.py, and a value of
`training.grpo.reward` in config/schema.yaml."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class Rollout:
    """One finished conversation and what a reward may read about its pair."""

    pair: str
    name: str
    task: str
    persona: str
    turns: list[dict]  # [{"role": "questioner"|"roleplayer", "text": ...}, ...] as the simulation writes them
    gold: str | None = None
    distractors: tuple[str, ...] = ()  # other personas of the split (info_gain's alternatives), fixed per pair


class Reward:
    name: ClassVar[str]
    needs_gold: ClassVar[bool] = False  # the Oracle's gold responses are an input of the job
    needs_scorer: ClassVar[bool] = False  # loads m0 (the scorer role) to compute it
    # `__call__` may be given several rollouts at once; each reward is a function of its own rollout only

    def __init__(self, prompts: Any = None, scorer: Any = None, **_: Any) -> None:
        self.prompts, self.scorer = prompts, scorer

    def __call__(self, rollouts: Sequence[Rollout]) -> list[float]:
        raise NotImplementedError

    def per_turn(self, rollout: Rollout) -> list[float]:
        """The reward of the conversation cut after each questioner-roleplayer exchange k = 1..K (credit per
        question: the differences show which question helped)."""
        cuts = [
            Rollout(**{**rollout.__dict__, "turns": rollout.turns[: 2 * k]})
            for k in range(1, len(rollout.turns) // 2 + 1)
        ]
        return self(cuts)
