"""Win-rate answers (spec §6.2): a model answers after one test conversation per selected pair.

The pairs are sampled per turn-count group from the pairs and groups alone (seeded), so every model and
every variant answers on the same pairs. The conversation is either a random one of the pair's (`random`,
the paper's zero-shot; drawn per pair from the seed, so the same index for every model) or the pair's
log-prob top-1 (`top1`, rank 0 of the topk file). The answering model is the role's --model: m_t itself,
or m0 answering m_t's conversations (the paper's control for answer quality).
"""

from __future__ import annotations

import argparse

from ..errors import InputError
from ..log import get_logger
from ..prompts import load_prompt_set
from ..records import read_jsonl, write_jsonl
from . import generation
from .common import add_data_arguments, add_role_arguments, load_conversations, load_pairs, rng_for

log = get_logger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--conversations", required=True, help="m_t's pooled test conversations")
    p.add_argument("--top1", help="m_t's topk file of the test split (conversation: top1)")
    p.add_argument("--conversation", choices=["random", "top1"], required=True)
    add_data_arguments(p)
    p.add_argument("--pairs-per-group", type=int, required=True, help="pairs per turn-count group (0 = all)")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--output", required=True)
    add_role_arguments(p)


def select_pairs(groups: dict[str, int], pair_order: dict[str, int], per_group: int, seed: int) -> list[str]:
    """`per_group` pairs of each turn-count group (all when 0 or fewer exist), in group then pair order.
    Depends only on the keys, their groups and the seed: the same pairs for every model and variant."""
    by_group: dict[int, list[str]] = {}
    for key in sorted(groups, key=pair_order.__getitem__):
        by_group.setdefault(groups[key], []).append(key)
    chosen = []
    for g in sorted(by_group):
        keys = by_group[g]
        if per_group and per_group < len(keys):
            picked = set(rng_for("winrate-pairs", seed, g).sample(keys, per_group))
            keys = [k for k in keys if k in picked]
        chosen += keys
    return chosen


def random_conversation(convs: list[dict], seed: int, pair: str) -> dict:
    options = sorted(convs, key=lambda c: c["conv"])
    return options[rng_for("winrate-conversation", seed, pair).randrange(len(options))]


def select(
    convs: list[dict], pair_order: dict[str, int], per_group: int, seed: int, top1: dict[str, dict] | None = None
) -> tuple[list[dict], list[str]]:
    """The chosen conversation of every selected pair, and the selected pairs that have no top-1
    conversation (no gold response, so never scored: counted, left out)."""
    by_pair: dict[str, list[dict]] = {}
    for c in convs:
        by_pair.setdefault(c["pair"], []).append(c)
    keys = select_pairs({k: v[0]["target_turns"] for k, v in by_pair.items()}, pair_order, per_group, seed)
    if top1 is None:
        return [random_conversation(by_pair[k], seed, k) for k in keys], []
    return [top1[k] for k in keys if k in top1], [k for k in keys if k not in top1]


def _top1(path: str) -> dict[str, dict]:
    best = {}
    for lineno, r in enumerate(read_jsonl(path, required=("pair", "conv", "rank", "turns", "target_turns")), 1):
        if r["rank"] == 0:
            if r["pair"] in best:
                raise InputError(path, f"pair {r['pair']} has two rank-0 conversations", lineno)
            best[r["pair"]] = r
    return best


def run(args: argparse.Namespace) -> None:
    pairs = load_pairs(args.tasks, args.personas)
    by_key = {p.key: p for p in pairs}
    prompts = load_prompt_set(args.prompts)
    if args.conversation == "top1" and not args.top1:
        raise InputError(args.conversations, "--conversation top1 needs --top1 (the test split's topk file)")
    top1 = _top1(args.top1) if args.conversation == "top1" else None
    chosen, no_top1 = select(
        load_conversations(args.conversations), {p.key: p.index for p in pairs}, args.pairs_per_group, args.seed, top1
    )
    inputs = [prompts.winrate_answer(by_key[c["pair"]].name, by_key[c["pair"]].task, c["turns"]) for c in chosen]
    gen = generation.generate(
        args, "winrate_answer", inputs, [(c["pair"], c["conv"]) for c in chosen], prompt_set=args.prompts, n=1
    )
    recs = [
        {"pair": c["pair"], "conv": c["conv"], "group": c["target_turns"], "text": o[0]}
        for c, o in zip(chosen, gen.outputs, strict=True)
    ]
    write_jsonl(args.output, recs, {**gen.meta, "conversation": args.conversation, "no_top1": no_top1})
    if no_top1:
        log.warning("%d selected pair(s) have no top-1 conversation (no gold): left out", len(no_top1))
    log.info("wrote %d answers", len(recs))
