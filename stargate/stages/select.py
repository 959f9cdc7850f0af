"""The conversations a selecting training method trains on (`dpo`, `rwr`: training/methods/), chosen from every
scored conversation of a pair.

    stargate select --method dpo --conversations C --logprobs L --knobs '{"min_gap": 1.0}' --output O

The method's `select` chooses (and documents how); `--knobs` holds the keys of its `training.<method>` block that
the selection reads (`select_keys`). Each output record
is the conversation record with `logprob` and the fields the method adds (`side` for dpo, `weight` for rwr):
the regularize stage answers after exactly these conversations, and sft_data builds the training examples.
"""

from __future__ import annotations

import argparse
import json
import math

from ..errors import InputError, StargateError
from ..log import get_logger
from ..records import read_jsonl, read_meta, write_jsonl
from ..training.methods.offline import OFFLINE_METHODS, get_offline_method
from .common import load_conversations

log = get_logger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", required=True, choices=[n for n, m in OFFLINE_METHODS.items() if m.selects])
    p.add_argument("--conversations", required=True, help="pooled conversations of the split")
    p.add_argument("--logprobs", required=True, help="their qa-experimental scores (the reward)")
    p.add_argument("--knobs", default="{}", help="the method's training.<method> block as JSON")
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


def run(args: argparse.Namespace) -> None:
    method = get_offline_method(args.method)
    try:
        knobs = json.loads(args.knobs)
    except json.JSONDecodeError as exc:
        raise StargateError(f"--knobs is not valid JSON: {exc}") from None
    missing = [k for k in method.select_keys if k not in knobs]
    if not isinstance(knobs, dict) or missing:
        raise StargateError(f"--knobs: give the method's {', '.join(method.select_keys)} (training.{method.block})")
    convs, scores = scores_by_pair(args.conversations, args.logprobs)
    try:
        out, meta = method.select(convs, scores, knobs, args.logprobs)
    except (TypeError, ValueError) as exc:
        raise StargateError(f"--knobs: training.{method.block} has a value of the wrong type ({exc})") from None
    write_jsonl(args.output, out, {"stage": "select", "method": args.method, **meta})
