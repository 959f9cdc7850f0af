"""The persona-task pairs an online method (training.method grpo) plays its rollouts on, one split's worth.

    stargate rollout-prompts --method grpo --tasks T --personas P [--gold G] --distractors 4 --distractor-seed 0 \\
        --prompts fixed_v1 --output results/m{t}/grpo/{split}.jsonl

Each record: {pair, name, task, persona, gold (when the reward reads it), distractors}: K other personas of the
split, fixed per pair (the info_gain reward's alternatives). The meta names the method and the prompt set, as
sft_data's does, so `stargate train` renders the rollouts with that set's templates.
"""

from __future__ import annotations

import argparse

from ..log import get_logger
from ..prompts import provenance
from ..records import write_jsonl
from ..rewards.info_gain import distractors_for
from ..training.methods.registry import online_methods
from .common import load_gold, load_pairs

log = get_logger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", required=True, choices=online_methods(), help="training.method")
    p.add_argument("--tasks", required=True)
    p.add_argument("--personas", required=True)
    p.add_argument("--gold", help="the Oracle's gold responses (a reward that reads them)")
    p.add_argument("--distractors", type=int, default=4, help="other personas per pair (info_gain)")
    p.add_argument("--distractor-seed", type=int, default=0)
    p.add_argument("--prompts", required=True, help="the prompt set the rollouts are rendered with")
    p.add_argument("--output", required=True)


def run(args: argparse.Namespace) -> None:
    pairs = load_pairs(args.tasks, args.personas)
    gold = load_gold(args.gold, {p.key: p for p in pairs}) if args.gold else {}
    personas = sorted({p.persona for p in pairs})
    recs = []
    for p in pairs:
        if args.gold and p.key not in gold:
            continue  # dropped by the oracle: no reward without a gold response
        rec = {"pair": p.key, "name": p.name, "task": p.task, "persona": p.persona}
        rec["distractors"] = list(distractors_for(p.key, p.persona, personas, args.distractors, args.distractor_seed))
        if args.gold:
            rec["gold"] = gold[p.key]
        recs.append(rec)
    meta = {"stage": "rollout_prompts", "method": args.method, "n_no_gold": len(pairs) - len(recs)}
    write_jsonl(args.output, recs, {**meta, **provenance(args.prompts)})
    log.info("wrote %d rollout prompts (%d pairs without gold left out)", len(recs), len(pairs) - len(recs))
