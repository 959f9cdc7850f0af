"""Judge m_t's answers against m0's (spec §6.2): the judge sees the full persona and the task, never the
conversation. Each comparison is judged in the orders its judge protocols need (stargate.evaluation.protocols:
`randomized` = a seeded coin flip per pair, `mt_a` / `mt_b` = m_t always shown as A / B), or in both orders
with `--both-orders` (bias-aware: position bias measured, a flip with the order is a tie). The coin flip
depends on the seed and the pair only, so it is the same for every model and variant. Replies are read with
the verdict format of the prompt set's judge template (stargate.evaluation.verdicts).

Every judged order keeps its raw reply and outcome (win, loss, tie, unparsable, refused); nothing is
dropped from the file. Unparsable and refused replies are counted in the .meta.json (`n_refused`,
`n_unusable`, `n_dropped`, over judge calls) and fail the stage beyond --max-dropped-fraction (the paper
kept 289-293 of 300, §6.2).

`--mode logprob` is a forced choice for local judges too small to follow the verdict format (the
embedded 135M model): the judge scores the two verdict lines of the prompt set's format (paper_v1's
"Final Response: A" / "... B") after the same prompt and the likelier one is its verdict. The paper's GPT-4
judge uses `generate`.
"""

from __future__ import annotations

import argparse
from collections import Counter

from ..errors import StargateError
from ..evaluation import protocols, ratings
from ..evaluation.verdicts import VerdictFormat, outcome_for_candidate
from ..log import get_logger
from ..prompts import load_prompt_set
from ..records import read_jsonl, write_jsonl
from . import generation
from .common import add_data_arguments, add_role_arguments, pairs_by_key, rng_for
from .dropped import Dropped, add_cap_argument

log = get_logger(__name__)

CAP_KEY = "evaluation.winrate.max_dropped_fraction"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--candidate", required=True, help="answers of m_t (or of m0 on m_t's conversations)")
    p.add_argument("--baseline", required=True, help="answers of m0 on its own conversations")
    add_data_arguments(p)
    p.add_argument("--seed", type=int, required=True, help="seed of the per-pair coin flips (randomized)")
    p.add_argument("--mode", choices=["generate", "logprob"], required=True)
    p.add_argument(
        "--positions",
        required=True,
        help=f"comma-separated judge protocols the judge file must serve ({', '.join(protocols.POSITIONS)})",
    )
    p.add_argument("--both-orders", action=argparse.BooleanOptionalAction, required=True)
    p.add_argument(
        "--ratings",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="also rate each answer 1-7 on its own (stargate.evaluation.ratings)",
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=0,
        help="ask the judge again this many times per judged order, each with its own seed (an API judge is "
        "called again, not answered from the cache); outcomes in judged[order]['repeats'] (generate mode only)",
    )
    p.add_argument("--output", required=True)
    add_role_arguments(p)
    add_cap_argument(p, 1.0, CAP_KEY)


def randomized_position(seed: int, pair: str) -> str:
    """m_t's position under the randomized protocol: a coin flip that depends on the seed and pair only."""
    return "A" if rng_for("judge-position", seed, pair).random() < 0.5 else "B"


def _positions(text: str) -> list[str]:
    values = [p.strip() for p in text.split(",") if p.strip()]
    bad = [p for p in values if p not in protocols.POSITIONS]
    if bad or not values:
        raise StargateError(f"--positions: '{text}' must list some of {', '.join(protocols.POSITIONS)}")
    return values


def run(args: argparse.Namespace) -> None:
    pairs = pairs_by_key(args.tasks, args.personas)
    prompts = load_prompt_set(args.prompts)
    positions = _positions(args.positions)
    parser = protocols.verdict_parser([*positions, protocols.BOTH_ORDERS] if args.both_orders else positions, prompts)
    cand = read_jsonl(args.candidate, required=("pair", "group", "text"), allow_empty=True)
    base = {r["pair"]: r for r in read_jsonl(args.baseline, required=("pair", "group", "text"), allow_empty=True)}
    if {r["pair"] for r in cand} != set(base):
        raise StargateError(
            f"{args.candidate} and {args.baseline} answer different pairs: both must come from the "
            "same winrate selection (same seed, pairs_per_group and test split)"
        )
    items, calls, inputs = [], [], []
    for r in cand:
        p = pairs[r["pair"]]
        item = {
            "pair": r["pair"],
            "group": r["group"],
            "conv": r.get("conv"),
            "randomized_position": randomized_position(args.seed, r["pair"]),
            "judged": {},
        }
        items.append(item)
        for order in protocols.orders_to_judge(positions, args.both_orders, item["randomized_position"]):
            a, b = (r["text"], base[r["pair"]]["text"]) if order == "A" else (base[r["pair"]]["text"], r["text"])
            calls.append((item, order))
            inputs.append(prompts.judge(p.persona, p.task, a, b))
    keys = [(item["pair"], order) for item, order in calls]
    if args.repeats < 0 or (args.repeats and args.mode != "generate"):
        raise StargateError(
            f"--repeats {args.repeats}: give 0 or more, and only with --mode generate (a forced choice is "
            "deterministic: evaluation.winrate.judge_repeats needs verdict: generate)"
        )
    for r in range(1, args.repeats + 1):  # the repeats' keys give them other seeds, hence other cache entries
        inputs += inputs[: len(calls)]
        keys += [(item["pair"], order, f"repeat{r}") for item, order in calls]
    rated = []  # (item, who, text) of every answer rated on its own
    if args.ratings:
        for item, r in zip(items, cand, strict=True):
            p = pairs[r["pair"]]
            for who, text in (("candidate", r["text"]), ("baseline", base[r["pair"]]["text"])):
                rated.append((item, who))
                inputs.append(ratings.prompt(prompts, p.persona, p.task, text))
                keys.append((item["pair"], "rating", who))
    if args.mode == "generate":
        gen = generation.generate(args, "judge", inputs, keys, prompt_set=args.prompts, n=1)
        outs, meta = [o[0] for o in gen.outputs], gen.meta
    else:
        outs, meta = _forced_choice(args, inputs, len(calls), parser)
    n_asked = len(calls) * (1 + args.repeats)
    outs, repeat_outs, rating_outs = outs[: len(calls)], outs[len(calls) : n_asked], outs[n_asked:]
    for (item, who), text in zip(rated, rating_outs, strict=True):
        item.setdefault("ratings", {})[who] = {"raw": text, "rating": ratings.parse(text)}
    dropped = Dropped(len(calls))
    counts: Counter = Counter()
    for (item, order), text in zip(calls, outs, strict=True):
        verdict = parser.classify(text)
        result = outcome_for_candidate(verdict, order)
        counts[result] += 1
        if result == "refused":
            dropped.refused.append(f"{item['pair']}@{order}")
        elif result == "unparsable":
            dropped.unusable.append(f"{item['pair']}@{order}")
        item["judged"][order] = {"raw": text, "verdict": verdict, "outcome": result}
    for i, text in enumerate(repeat_outs):  # repetition stability: outcomes only (the raw replies are cached)
        item, order = calls[i % len(calls)]
        item["judged"][order].setdefault("repeats", []).append(outcome_for_candidate(parser.classify(text), order))
    dropped.check(args.max_dropped_fraction, "judge verdicts", CAP_KEY)
    write_jsonl(
        args.output,
        items,
        {
            **meta,
            "mode": args.mode,
            "positions": positions,
            "both_orders": args.both_orders,
            "n_comparisons": len(items),
            "n_calls": len(calls),
            "n_repeat_calls": len(repeat_outs),
            "n_rating_calls": len(rated),
            "n_ratings_unparsable": sum(r["rating"] is None for i in items for r in (i.get("ratings") or {}).values()),
            "outcomes": {k: counts.get(k, 0) for k in ("win", "loss", "tie", "unparsable", "refused")},
            **dropped.meta(args.max_dropped_fraction),
        },
    )
    log.info("%d comparisons, %d judge calls: %s", len(items), len(calls), dict(counts))


def _forced_choice(
    args: argparse.Namespace, inputs: list, n_verdicts: int, parser: VerdictFormat
) -> tuple[list[str], dict]:
    """Verdicts (the first n_verdicts inputs) by log p of the format's two verdict lines ("Final Response: A"
    vs "... B"); ratings (the rest) by the likeliest of "Rating: 1".."Rating: 7"."""
    if not inputs:
        return [], {"stage": "judge", "backend": "forced-choice", "model": str(args.model)}
    options = [parser.completions] * n_verdicts + [[f"Rating: {k}" for k in ratings.SCALE]] * (
        len(inputs) - n_verdicts
    )
    ctx = [c for c, opts in zip(inputs, options, strict=True) for _ in opts]
    targets = [t for opts in options for t in opts]
    scored = generation.score(args, "judge", ctx, targets, prompt_set=args.prompts)
    scores = iter(scored.scores)
    outs = []
    for opts in options:
        lps = [next(scores).logprob for _ in opts]
        best = max(range(len(opts)), key=lambda i: (lps[i], -i))  # ties: the first option
        shown = ", ".join(f"log p({o.split(': ')[1]}) = {lp:.4f}" for o, lp in zip(opts, lps, strict=True))
        outs.append(f"(forced choice) {shown}\n\n{opts[best]}")
    return outs, scored.meta
