"""The conversations the DPO and RWR methods train on, chosen from every scored conversation of a pair.

    stargate select --method dpo --conversations C --logprobs L --min-gap 1.0 --output O
    stargate select --method rwr --conversations C --logprobs L --temperature 1.0 --output O

`dpo` (ACT-style contrast): per pair, the best conversation by m0's log p(gold) is `chosen` and the worst is
`rejected` (ties go to the lower index, as in top-k). A pair is used only when the gap best - worst is > 0
and >= the minimum gap; a pair with one conversation has no contrast and is left out (counted in the meta).

`rwr` (reward-weighted SFT, arXiv 2506.06964): every conversation of a pair, weighted by
n * softmax(log p / temperature) over the pair's n conversations. The weights average 1 per pair, so a high
temperature is SFT on every conversation and a low one is top-1 SFT; a pair with one conversation gets 1.

Each output record is the conversation record with `logprob`, and `side` (dpo) or `weight` (rwr): the
regularize stage answers after exactly these conversations, and sft_data builds the training examples.
"""

from __future__ import annotations

import argparse
import math

from ..errors import InputError, StargateError
from ..log import get_logger
from ..records import read_jsonl, read_meta, write_jsonl
from .common import load_conversations

log = get_logger(__name__)

METHODS = ("dpo", "rwr")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", required=True, choices=METHODS)
    p.add_argument("--conversations", required=True, help="pooled conversations of the split")
    p.add_argument("--logprobs", required=True, help="their qa-experimental scores (the reward)")
    p.add_argument("--min-gap", type=float, help="dpo: smallest best - worst log-prob gap of a used pair")
    p.add_argument("--temperature", type=float, help="rwr: softmax temperature of the weights, in nats")
    p.add_argument("--output", required=True)


def scores_by_pair(conversations: str, logprobs: str) -> tuple[dict[tuple[str, int], dict], dict[str, list]]:
    """The conversations by (pair, conv) and each pair's [(logprob, conv)], checked against each other."""
    convs = {(c["pair"], c["conv"]): c for c in load_conversations(conversations)}
    scores: dict[str, list[tuple[float, int]]] = {}
    for lineno, s in enumerate(read_jsonl(logprobs, required=("pair", "conv", "logprob")), start=1):
        if (s["pair"], s["conv"]) not in convs:
            raise InputError(
                logprobs,
                f"score for unknown conversation {s['pair']} #{s['conv']}",
                lineno,
                "the scores were computed on other conversations: rerun the score stage",
            )
        if not isinstance(s["logprob"], (int, float)) or not math.isfinite(s["logprob"]):
            raise InputError(logprobs, f"logprob of {s['pair']} #{s['conv']} is not a finite number", lineno)
        scores.setdefault(s["pair"], []).append((float(s["logprob"]), s["conv"]))
    # pairs without a gold response (dropped by the oracle) were not scored and are not used
    missing = {k[0] for k in convs} - set(scores) - set(read_meta(logprobs).get("no_gold", []))
    if missing:
        raise InputError(logprobs, f"{len(missing)} pair(s) have no scores, e.g. {sorted(missing)[0]}")
    return convs, scores


def dpo_pairs(scores: dict[str, list[tuple[float, int]]], min_gap: float) -> tuple[list[tuple], dict[str, int]]:
    """[(pair, chosen conv, rejected conv, gap)] and the counts of pairs left out, by reason."""
    out, skipped = [], {"one_conversation": 0, "tie": 0, "below_min_gap": 0}
    for pair in sorted(scores):
        ranked = sorted(scores[pair], key=lambda v: (-v[0], v[1]))
        if len(ranked) < 2:
            skipped["one_conversation"] += 1
            continue
        (best, chosen), (worst, rejected) = ranked[0], ranked[-1]
        gap = best - worst
        if gap <= 0:
            skipped["tie"] += 1
        elif gap < min_gap:
            skipped["below_min_gap"] += 1
        else:
            out.append((pair, chosen, rejected, gap))
    return out, skipped


def rwr_weights(values: list[float], temperature: float) -> list[float]:
    """n * softmax(values / temperature): mean 1, stable for any log-prob scale."""
    top = max(values)
    exp = [math.exp((v - top) / temperature) for v in values]
    total = sum(exp)
    return [len(values) * e / total for e in exp]


def run(args: argparse.Namespace) -> None:
    convs, scores = scores_by_pair(args.conversations, args.logprobs)
    out: list[dict] = []
    if args.method == "dpo":
        if args.min_gap is None or args.min_gap < 0:
            raise StargateError("select --method dpo needs --min-gap >= 0 (training.dpo.min_gap)")
        chosen, skipped = dpo_pairs(scores, args.min_gap)
        for pair, good, bad, gap in chosen:
            lp = dict((c, v) for v, c in scores[pair])
            out.append({**convs[(pair, good)], "logprob": lp[good], "side": "chosen", "gap": gap})
            out.append({**convs[(pair, bad)], "logprob": lp[bad], "side": "rejected", "gap": gap})
        meta = {"min_gap": args.min_gap, "n_pairs": len(chosen), "skipped": skipped}
        log.info("dpo: %d pairs of %d used; left out %s", len(chosen), len(scores), skipped)
        if not chosen:
            raise StargateError(
                f"no pair of {args.logprobs} has two conversations whose log-prob gap is > 0 and >= {args.min_gap}; "
                "lower training.dpo.min_gap or simulate more conversations per pair"
            )
    else:
        if args.temperature is None or args.temperature <= 0:
            raise StargateError("select --method rwr needs --temperature > 0 (training.rwr.temperature)")
        for pair in sorted(scores):
            vals = sorted(scores[pair], key=lambda v: v[1])
            for (lp, conv), w in zip(vals, rwr_weights([v for v, _ in vals], args.temperature), strict=True):
                out.append({**convs[(pair, conv)], "logprob": lp, "weight": w})
        meta = {"temperature": args.temperature, "n_pairs": len(scores)}
        log.info("rwr: %d conversations of %d pairs weighted (T=%g)", len(out), len(scores), args.temperature)
    write_jsonl(args.output, out, {"stage": "select", "method": args.method, **meta})
