"""Training examples (spec §3.6, prompts §8): a used conversation without any instruction, then a final answer.

The final answer (the regularizer, `training.regularizer`) is `self`: m_t's own answer after that
conversation (the paper), `gold`: the oracle's gold response (the paper's ablation), or `none`: no answer,
the example ends with the last question (questions only, the other ablation).

The records are the training method's (training/methods/): sft {pair, conv, messages} of the top-k
conversations; rwr the same with a `weight`, dpo {pair, chosen, rejected, chosen_conv, rejected_conv, gap}, both
from the `select` stage's choice.
"""

from __future__ import annotations

import argparse

from ..errors import InputError, StargateError
from ..log import get_logger
from ..prompts import load_prompt_set, provenance
from ..records import read_jsonl, write_jsonl
from ..training.methods.offline import OFFLINE_METHODS, get_offline_method
from .common import add_data_arguments, load_conversations, load_gold, lookup_pair, pairs_by_key

log = get_logger(__name__)

REGULARIZERS = ("self", "gold", "none")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--topk", required=True, help="the used conversations: top-k (sft) or the select stage's (dpo, rwr)"
    )
    p.add_argument("--method", default="sft", choices=list(OFFLINE_METHODS), help="training.method")
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
    method = get_offline_method(args.method)
    method.check_used(convs, args.topk)
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
    recs = method.records(examples, args.topk)
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
