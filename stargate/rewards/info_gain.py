"""`info_gain`: what a conversation reveals about the user, with no gold answer (CURIO / BED-LLM-style belief
gain, m0 as the belief model). For the true persona p and K distractor personas d_1..d_K of the same split:

    belief(c) = log softmax_j [ log p_m0(persona_j | c) ]  at j = p        (j over p, d_1..d_K)
    info_gain = belief(conversation) - belief(no conversation)

where log p_m0(persona | c) is m0's summed log-probability of the persona's text as its answer to BELIEF_PROMPT
after the user's words so far. A conversation that makes the true persona likelier than the distractors earns a
positive reward; the prior term removes what the name and task alone already tell. No Oracle call is needed.
The prompt is part of this module (its fingerprint reruns what uses it)."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from .base import Reward, Rollout

BELIEF_PROMPT = (
    "Here is a conversation with a user who asked for help.\n\n{history}\n\n"
    "From what the user said, describe this user in a few sentences."
)


def distractors_for(pair: str, persona: str, personas: Sequence[str], k: int, seed: int) -> tuple[str, ...]:
    """K other personas of the split, the same for a pair in every run (seeded by the pair key)."""
    others = sorted({p for p in personas if p != persona})
    rng = random.Random(f"{seed}|{pair}")
    return tuple(rng.sample(others, min(k, len(others))))


def history(rollout: Rollout) -> str:
    lines = [f"User: My name is {rollout.name.strip()}. {rollout.task.strip()}"]
    for t in rollout.turns:
        lines.append(("Assistant: " if t["role"] == "questioner" else "User: ") + t["text"].strip())
    return "\n".join(lines)


def log_softmax_at(values: Sequence[float], i: int) -> float:
    top = max(values)
    return values[i] - top - math.log(sum(math.exp(v - top) for v in values))


class InfoGain(Reward):
    name = "info_gain"
    needs_scorer = True

    def belief(self, rollouts: Sequence[Rollout]) -> list[float]:
        contexts, targets, spans = [], [], []
        for r in rollouts:
            ctx = [{"role": "user", "content": BELIEF_PROMPT.format(history=history(r))}]
            candidates = [r.persona, *r.distractors]
            spans.append((len(targets), len(candidates)))
            contexts += [ctx] * len(candidates)
            targets += [c.strip() for c in candidates]
        scores = [s.logprob for s in self.scorer.score(contexts, targets)]
        return [log_softmax_at(scores[start : start + n], 0) for start, n in spans]

    def __call__(self, rollouts: Sequence[Rollout]) -> list[float]:
        # the prior (no conversation) is the same for every rollout of a pair: computed once per pair
        priors: dict[tuple, Rollout] = {}
        for r in rollouts:
            priors.setdefault(
                (r.pair, r.name, r.task, r.persona, r.distractors), Rollout(**{**r.__dict__, "turns": []})
            )
        prior = dict(zip(priors, self.belief(list(priors.values())), strict=True))
        with_conv = self.belief(rollouts)
        return [
            a - prior[(r.pair, r.name, r.task, r.persona, r.distractors)]
            for r, a in zip(rollouts, with_conv, strict=True)
        ]
