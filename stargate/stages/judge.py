"""Judge m_t's answers against m0's (spec §6.2): the judge sees the full persona and the task, never the
conversation; positions are randomised per item and verdicts mapped back to models. Ties, unparsable
verdicts and replies refused by a content filter (None from the backend) are kept in the file with
`winner: null`, left out of the win rate, counted in the .meta.json (`n_refused`, `n_unusable`,
`n_dropped`), and fail the stage beyond --max-dropped-fraction (the paper kept 289-293 of 300, §6.2).

`--mode logprob` is a forced choice for local judges too small to follow the verdict format (the
embedded 135M model): the judge scores the two completions "Final Response: A" / "... B" of the same
prompt and the likelier one is its verdict. The paper's GPT-4 judge uses `generate`.
"""

from __future__ import annotations

import argparse
import random

from ..errors import StargateError
from ..log import get_logger
from ..prompts import load_prompt_set
from ..records import read_jsonl, write_jsonl
from . import generation
from .common import add_data_arguments, add_role_arguments, pairs_by_key
from .dropped import Dropped, add_cap_argument

log = get_logger(__name__)

CAP_KEY = "evaluation.winrate.max_dropped_fraction"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--candidate", required=True, help="answers of m_t")
    p.add_argument("--baseline", required=True, help="answers of m0")
    add_data_arguments(p)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--mode", choices=["generate", "logprob"], required=True)
    p.add_argument("--output", required=True)
    add_role_arguments(p)
    add_cap_argument(p, 1.0, CAP_KEY)


def run(args: argparse.Namespace) -> None:
    pairs = pairs_by_key(args.tasks, args.personas)
    prompts = load_prompt_set(args.prompts)
    cand = read_jsonl(args.candidate, required=("pair", "group", "text"))
    base = {r["pair"]: r for r in read_jsonl(args.baseline, required=("pair", "group", "text"))}
    if {r["pair"] for r in cand} != set(base):
        raise StargateError(
            f"{args.candidate} and {args.baseline} answer different pairs: both must come from the "
            "same winrate selection (same seed, pairs_per_group and test split)"
        )
    rng = random.Random(args.seed)
    items, inputs = [], []
    for r in cand:
        p = pairs[r["pair"]]
        candidate_first = rng.random() < 0.5
        a, b = (r["text"], base[r["pair"]]["text"]) if candidate_first else (base[r["pair"]]["text"], r["text"])
        items.append({"pair": r["pair"], "group": r["group"], "candidate_position": "A" if candidate_first else "B"})
        inputs.append(prompts.judge(p.persona, p.task, a, b))
    if args.mode == "generate":
        gen = generation.generate(
            args, "judge", inputs, [(item["pair"],) for item in items], prompt_set=args.prompts, n=1
        )
        outs, meta = [o[0] for o in gen.outputs], gen.meta
    else:
        ctx = [c for c in inputs for _ in (0, 1)]
        scored = generation.score(
            args, "judge", ctx, ["Final Response: A", "Final Response: B"] * len(inputs), prompt_set=args.prompts
        )
        scores, meta = scored.scores, scored.meta
        outs = [
            f"(forced choice) log p(A) = {a.logprob:.4f}, log p(B) = {b.logprob:.4f}\n\n"
            f"Final Response: {'A' if a.logprob >= b.logprob else 'B'}"
            for a, b in zip(scores[0::2], scores[1::2], strict=True)
        ]
    recs, wins = [], {"candidate": 0, "baseline": 0, "invalid": 0}
    dropped = Dropped(len(items))
    for item, o in zip(items, outs, strict=True):
        verdict = None if o is None else prompts.parse_verdict(o)
        if verdict is None:
            winner = None
            (dropped.refused if o is None else dropped.unusable).append(item["pair"])
        else:
            winner = "candidate" if verdict.upper() == item["candidate_position"] else "baseline"
        wins[winner or "invalid"] += 1
        recs.append({**item, "raw": o, "verdict": verdict, "winner": winner, "refused": o is None})
    dropped.check(args.max_dropped_fraction, "judge verdicts", CAP_KEY)
    write_jsonl(args.output, recs, {**meta, "mode": args.mode, **wins, **dropped.meta(args.max_dropped_fraction)})
    log.info("verdicts: %s", wins)
