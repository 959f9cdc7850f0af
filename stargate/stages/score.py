"""Log-probability of the gold response under the scorer m0 (spec §4), for one condition.

qa-experimental / pos-control-1 / shuffled score every conversation (one value each); neg-control and
pos-control-2 do not depend on a conversation and are scored once per pair (the original scored
pos-control-2 ten times per pair, all equal).
"""

from __future__ import annotations

import argparse

from ..config import CONDITIONS, CONDITIONS_PER_ITERATION
from ..errors import InputError, StargateError
from ..log import get_logger
from ..prompts import load_prompt_set
from ..records import write_jsonl
from . import generation
from .common import add_data_arguments, add_role_arguments, load_conversations, load_gold, lookup_pair, pairs_by_key

log = get_logger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--condition", required=True, choices=CONDITIONS)
    p.add_argument("--conversations", help="pooled (or shuffled) conversations; not used by pair conditions")
    p.add_argument("--gold", required=True)
    add_data_arguments(p)
    p.add_argument("--output", required=True)
    add_role_arguments(p)


def run(args: argparse.Namespace) -> None:
    pairs = pairs_by_key(args.tasks, args.personas)
    gold = load_gold(args.gold, pairs)
    prompts = load_prompt_set(args.prompts)
    items = []  # (record without score, context, target)
    no_gold = sorted(k for k in pairs if k not in gold)  # dropped by the oracle stage: nothing to score
    if no_gold:
        log.warning(
            "%d pair(s) have no gold response (dropped by the oracle, see its .meta.json): not scored", len(no_gold)
        )
    if args.condition in CONDITIONS_PER_ITERATION:
        if not args.conversations:
            raise StargateError(f"condition {args.condition} needs --conversations")
        for lineno, c in enumerate(load_conversations(args.conversations), start=1):
            p = lookup_pair(pairs, c["pair"], args.conversations, lineno)
            if p.key not in gold:
                continue
            ctx = prompts.scoring_context(args.condition, p.name, p.persona, p.task, c["turns"])
            items.append(
                ({"pair": p.key, "conv": c["conv"], "target_turns": c["target_turns"]}, ctx, gold[p.key].strip())
            )
    else:
        for p in pairs.values():
            if p.key not in gold:
                continue
            ctx = prompts.scoring_context(args.condition, p.name, p.persona, p.task, [])
            items.append(({"pair": p.key, "conv": None}, ctx, gold[p.key].strip()))
    if not items:
        raise InputError(
            args.gold,
            "no pair of the split has a gold response",
            fix="rerun the oracle stage; see the dropped pairs in its .meta.json",
        )
    scored = generation.score(
        args, "score", [ctx for _, ctx, _ in items], [t for _, _, t in items], prompt_set=args.prompts
    )
    recs = [
        {**rec, "condition": args.condition, "logprob": s.logprob, "n_tokens": s.n_tokens}
        for (rec, _, _), s in zip(items, scored.scores, strict=True)
    ]
    write_jsonl(
        args.output, recs, {**scored.meta, "condition": args.condition, "scorer": args.model, "no_gold": no_gold}
    )
    mean = sum(r["logprob"] for r in recs) / len(recs)
    log.info("scored %d items for %s (mean log p = %.2f)", len(recs), args.condition, mean)
