"""Keep the k conversations per pair with the highest log p(gold) (spec §3.4); ties go to the lower index."""

from __future__ import annotations

import argparse

from ..errors import InputError
from ..log import get_logger
from ..records import read_jsonl, read_meta, write_jsonl
from .common import load_conversations

log = get_logger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--conversations", required=True)
    p.add_argument("--logprobs", required=True, help="qa-experimental scores of those conversations")
    p.add_argument("--k", type=int, required=True)
    p.add_argument("--output", required=True)


def run(args: argparse.Namespace) -> None:
    convs = {(c["pair"], c["conv"]): c for c in load_conversations(args.conversations)}
    scores: dict[str, list[tuple[float, int]]] = {}
    for lineno, s in enumerate(read_jsonl(args.logprobs, required=("pair", "conv", "logprob")), start=1):
        if (s["pair"], s["conv"]) not in convs:
            raise InputError(
                args.logprobs,
                f"score for unknown conversation {s['pair']} #{s['conv']}",
                lineno,
                "the scores were computed on other conversations: rerun the score stage",
            )
        scores.setdefault(s["pair"], []).append((s["logprob"], s["conv"]))
    # pairs without a gold response (dropped by the oracle) were not scored and keep no conversation
    missing = {k[0] for k in convs} - set(scores) - set(read_meta(args.logprobs).get("no_gold", []))
    if missing:
        raise InputError(args.logprobs, f"{len(missing)} pair(s) have no scores, e.g. {sorted(missing)[0]}")
    out = []
    for pair, vals in scores.items():
        ranked = sorted(vals, key=lambda v: (-v[0], v[1]))[: args.k]
        for rank, (lp, conv) in enumerate(ranked):
            out.append({**convs[(pair, conv)], "logprob": lp, "rank": rank})
    write_jsonl(args.output, out, {"stage": "topk", "k": args.k})
    log.info("kept %d of %d conversations (k=%d)", len(out), len(convs), args.k)
