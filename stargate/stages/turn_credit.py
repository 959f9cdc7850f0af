"""`stargate turn-credit`: which question helped. For every test conversation of m_t, m0's log p(gold) after
the conversation cut after each exchange k = 0..K (k = 0: no conversation, the neg-control context; k >= 1:
the qa-experimental context of the first k question-answer exchanges), and the gain of each question,
log p after k minus log p after k - 1. With `--info-gain`, the same for the info_gain reward (m0's belief about
the true persona against distractors of the split, stargate/rewards/info_gain.py).

    stargate turn-credit --conversations C --gold G --tasks T --personas P --role JSON --model m0 --prompts SET \\
        --output results/m{t}/credit/test.jsonl

Each row: {pair, conv, k, logprob, gain[, info_gain, info_gain_gain]}; the log records the mean gain per k.
"""

from __future__ import annotations

import argparse

from ..log import get_logger
from ..prompts import load_prompt_set
from ..records import write_jsonl
from . import generation
from .common import add_data_arguments, add_role_arguments, load_conversations, load_gold, lookup_pair, pairs_by_key

log = get_logger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--conversations", required=True, help="m_t's pooled test conversations")
    p.add_argument("--gold", required=True)
    p.add_argument("--info-gain", action="store_true", help="also the per-turn info_gain (m0 as the belief model)")
    p.add_argument("--distractors", type=int, default=4)
    p.add_argument("--distractor-seed", type=int, default=0)
    add_data_arguments(p)
    add_role_arguments(p)
    p.add_argument("--output", required=True)


def contexts(prompts, p, turns: list[dict]) -> list:
    """The scoring context after each exchange k = 0..K."""
    out = [prompts.scoring_context("neg-control", p.name, p.persona, p.task, [])]
    for k in range(1, len(turns) // 2 + 1):
        out.append(prompts.scoring_context("qa-experimental", p.name, p.persona, p.task, turns[: 2 * k]))
    return out


def run(args: argparse.Namespace) -> None:
    pairs = pairs_by_key(args.tasks, args.personas)
    gold = load_gold(args.gold, pairs)
    prompts = load_prompt_set(args.prompts)
    rows, ctxs, targets = [], [], []
    convs = []
    for lineno, c in enumerate(load_conversations(args.conversations), start=1):
        p = lookup_pair(pairs, c["pair"], args.conversations, lineno)
        if p.key not in gold:
            continue
        convs.append((p, c))
        for k, ctx in enumerate(contexts(prompts, p, c["turns"])):
            rows.append({"pair": p.key, "conv": c["conv"], "k": k})
            ctxs.append(ctx)
            targets.append(gold[p.key].strip())
    # m0 is loaded once: it scores the gold response and, with --info-gain, is the belief model too
    with generation.open_role(args, "turn_credit", generation.read_role(args)) as m0:
        scored = generation.score(args, "turn_credit", ctxs, targets, prompt_set=args.prompts, backend=m0)
        for row, s in zip(rows, scored.scores, strict=True):
            row["logprob"] = s.logprob
        if args.info_gain:
            add_info_gain(prompts, pairs, convs, rows, m0, args.distractors, args.distractor_seed)
    prev: dict[tuple[str, int], dict] = {}
    for row in rows:
        before = prev.get((row["pair"], row["conv"]))
        row["gain"] = None if before is None else row["logprob"] - before["logprob"]
        if args.info_gain:
            row["info_gain_gain"] = None if before is None else row["info_gain"] - before["info_gain"]
        prev[(row["pair"], row["conv"])] = row
    write_jsonl(args.output, rows, {**scored.meta, "scorer": args.model, "info_gain": args.info_gain})
    for k in sorted({r["k"] for r in rows if r["k"]}):
        gains = [r["gain"] for r in rows if r["k"] == k]
        log.info(
            "question %d: mean gain in log p(gold) %+.3f over %d conversations", k, sum(gains) / len(gains), len(gains)
        )


def add_info_gain(prompts, pairs, convs, rows, m0, n_distractors: int, distractor_seed: int) -> None:
    """info_gain after each exchange (0 at k = 0 by definition), in the rows' order; m0 the belief model."""
    from ..rewards.base import Rollout
    from ..rewards.info_gain import InfoGain, distractors_for

    personas = sorted({p.persona for p in pairs.values()})
    cuts = []
    for p, c in convs:
        d = distractors_for(p.key, p.persona, personas, n_distractors, distractor_seed)
        for k in range(len(c["turns"]) // 2 + 1):
            cuts.append(Rollout(pair=p.key, name=p.name, task=p.task, persona=p.persona, turns=c["turns"][: 2 * k],
                                distractors=d))  # fmt: skip
    values = InfoGain(prompts=prompts, scorer=m0)(cuts)
    for row, v in zip(rows, values, strict=True):
        row["info_gain"] = v
