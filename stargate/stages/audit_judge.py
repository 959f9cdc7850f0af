"""The Roleplayer audit's judge pass (stargate.evaluation.audit_judge): for a seeded sample of at most
--max-turns Roleplayer turns of a questioner's test conversations, the judge role says whether the reply
contradicts the persona. One record per judged turn (pair, conv, turn, contradicts, reply); an API judge goes
through the paid-call cache. The summary's Roleplayer audit counts them as `contradicts_persona`."""

from __future__ import annotations

import argparse
from collections import Counter

from ..evaluation import audit_judge
from ..log import get_logger
from ..prompts import load_prompt_set
from ..records import write_jsonl
from . import generation
from .common import add_data_arguments, add_role_arguments, load_conversations, pairs_by_key

log = get_logger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--conversations", required=True, help="a questioner's test conversations")
    add_data_arguments(p)
    p.add_argument("--max-turns", type=int, required=True, help="Roleplayer turns judged at most (a seeded sample)")
    p.add_argument("--seed", type=int, required=True, help="seed of the sample")
    p.add_argument("--output", required=True)
    add_role_arguments(p)


def run(args: argparse.Namespace) -> None:
    pairs = pairs_by_key(args.tasks, args.personas)
    prompts = load_prompt_set(args.prompts)
    turns = audit_judge.roleplayer_turns(load_conversations(args.conversations, allow_empty=True))
    chosen = audit_judge.sample(turns, args.max_turns, args.seed)
    inputs = [
        audit_judge.prompt(prompts, pairs[key[0]].persona, pairs[key[0]].task, question, reply)
        for key, question, reply in chosen
    ]
    gen = generation.generate(args, "audit_judge", inputs, [key for key, _, _ in chosen], prompt_set=args.prompts, n=1)
    recs, counts = [], Counter()
    for (key, _, reply), out in zip(chosen, gen.outputs, strict=True):
        verdict = audit_judge.parse(out[0])
        counts[{True: "contradicts", False: "consistent", None: "unparsable"}[verdict]] += 1
        recs.append({"pair": key[0], "conv": key[1], "turn": key[2], "contradicts": verdict, "reply": reply,
                     "raw": out[0]})  # fmt: skip
    write_jsonl(
        args.output,
        recs,
        {**gen.meta, "n_roleplayer_turns": len(turns), "n_judged": len(recs), "max_turns": args.max_turns,
         "seed": args.seed, **{f"n_{k}": counts.get(k, 0) for k in ("contradicts", "consistent", "unparsable")}},
    )  # fmt: skip
    log.info("judged %d of %d Roleplayer turns: %s", len(recs), len(turns), dict(counts))
