"""Training examples (spec §3.6, prompts §8): a used conversation without any instruction, then a final answer.

The final answer (the regularizer, `training.regularizer`) is `self`: m_t's own answer after that
conversation (the paper), `gold`: the oracle's gold response (the paper's ablation), or `none`: no answer,
the example ends with the last question (questions only, the other ablation).

By `training.method`:
  sft  {pair, conv, messages}                     the top-k conversations
  rwr  {pair, conv, messages, weight}             every conversation, with its weight (stage `select`)
  dpo  {pair, chosen, rejected, chosen_conv, rejected_conv, gap}   best and worst of a pair (stage `select`)
"""

from __future__ import annotations

import argparse

from ..errors import InputError, StargateError
from ..log import get_logger
from ..prompts import load_prompt_set, provenance
from ..records import read_jsonl, write_jsonl
from .common import add_data_arguments, load_conversations, load_gold, lookup_pair, pairs_by_key

log = get_logger(__name__)

METHODS = ("sft", "dpo", "rwr")
REGULARIZERS = ("self", "gold", "none")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--topk", required=True, help="the used conversations: top-k (sft) or the select stage's (dpo, rwr)"
    )
    p.add_argument("--method", default="sft", choices=METHODS, help="training.method")
    p.add_argument("--regularizer", default="self", choices=REGULARIZERS, help="training.regularizer")
    p.add_argument("--responses", help="self: the regularize stage's answers; gold: the oracle's gold responses")
    add_data_arguments(p)
    p.add_argument("--output", required=True)


def final_answers(args: argparse.Namespace, pairs) -> tuple[dict, str]:
    """A lookup (pair, conv) -> final answer text, per regularizer, and what a missing one means."""
    if args.regularizer == "none":
        if args.responses:
            raise StargateError("--regularizer none trains on questions only; drop --responses")
        return {}, ""
    if not args.responses:
        raise StargateError(f"--regularizer {args.regularizer} needs --responses")
    if args.regularizer == "gold":
        gold = load_gold(args.responses, pairs)
        return {("gold", k): v for k, v in gold.items()}, "this pair has no gold response (dropped by the oracle)"
    recs = read_jsonl(args.responses, required=("pair", "conv", "text"))
    return {(r["pair"], r["conv"]): r["text"] for r in recs}, "rerun the regularize stage on the current conversations"


def run(args: argparse.Namespace) -> None:
    pairs = pairs_by_key(args.tasks, args.personas)
    prompts = load_prompt_set(args.prompts)
    answers, fix = final_answers(args, pairs)
    convs = load_conversations(args.topk)
    if args.method == "rwr" and any("weight" not in c for c in convs):
        raise InputError(args.topk, "rwr needs a `weight` per conversation", fix="make it with `stargate select`")
    if args.method == "dpo" and any(c.get("side") not in ("chosen", "rejected") for c in convs):
        raise InputError(args.topk, "dpo needs a `side` per conversation", fix="make it with `stargate select`")
    examples, n_empty, n_no_gold = [], 0, 0
    for lineno, c in enumerate(convs, start=1):
        p = lookup_pair(pairs, c["pair"], args.topk, lineno)
        if args.regularizer == "none":
            # the example ends with the last question: drop the answer turn and the user turn before it
            messages = prompts.sft_messages(p.name, p.task, c["turns"], "")[:-2]
        else:
            key = ("gold", c["pair"]) if args.regularizer == "gold" else (c["pair"], c["conv"])
            if key not in answers:
                if args.regularizer == "gold":
                    n_no_gold += 1
                    continue
                raise InputError(args.responses, f"no final answer for {c['pair']} #{c['conv']}", fix=fix)
            n_empty += not answers[key].strip()
            messages = prompts.sft_messages(p.name, p.task, c["turns"], answers[key])
        examples.append((c, messages))
    if n_empty:
        log.warning("%d examples have an empty final answer (kept: the questions are still trained)", n_empty)
    recs = records_for(args.method, examples, args.topk)
    meta = {
        "stage": "sft_data",
        "method": args.method,
        "regularizer": args.regularizer,
        "n_empty_final": n_empty,
        "n_no_gold": n_no_gold,
        **provenance(args.prompts),
    }
    write_jsonl(args.output, recs, meta)
    log.info("wrote %d %s examples (regularizer %s)", len(recs), args.method, args.regularizer)


def records_for(method: str, examples: list[tuple[dict, list[dict]]], source) -> list[dict]:
    if method == "sft":
        return [{"pair": c["pair"], "conv": c["conv"], "messages": m} for c, m in examples]
    if method == "rwr":
        return [{"pair": c["pair"], "conv": c["conv"], "messages": m, "weight": c["weight"]} for c, m in examples]
    sides: dict[str, dict[str, tuple[dict, list[dict]]]] = {}
    for c, m in examples:
        if c["side"] in sides.setdefault(c["pair"], {}):
            raise InputError(source, f"pair {c['pair']} has two {c['side']} conversations")
        sides[c["pair"]][c["side"]] = (c, m)
    out = []
    for pair, both in sides.items():
        if set(both) != {"chosen", "rejected"}:
            continue  # its other side had no gold response
        (good, chosen), (bad, rejected) = both["chosen"], both["rejected"]
        out.append(
            {
                "pair": pair,
                "chosen": chosen,
                "rejected": rejected,
                "chosen_conv": good["conv"],
                "rejected_conv": bad["conv"],
                "gap": good.get("gap"),
            }
        )
    return out
