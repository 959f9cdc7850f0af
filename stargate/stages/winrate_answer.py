"""Win-rate answers (spec §6.2, the zero-shot randomized protocol): m_t answers after one of its own test
conversations. Pairs are sampled per turn-count group and one conversation is drawn at random per pair,
with a fixed seed, so every model is evaluated on the same pairs and conversation indices.
"""

from __future__ import annotations

import argparse
import random

from ..log import get_logger
from ..prompts import load_prompt_set
from ..records import write_jsonl
from . import generation
from .common import add_data_arguments, add_role_arguments, load_conversations, load_pairs

log = get_logger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--conversations", required=True, help="m_t's pooled test conversations")
    add_data_arguments(p)
    p.add_argument("--pairs-per-group", type=int, required=True, help="pairs per turn-count group (0 = all)")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--output", required=True)
    add_role_arguments(p)


def select(convs: list[dict], pair_order: dict[str, int], per_group: int, seed: int) -> list[dict]:
    """The same (pair, conv) choices for every model: depends only on keys, groups, counts and seed."""
    by_pair: dict[str, list[dict]] = {}
    for c in convs:
        by_pair.setdefault(c["pair"], []).append(c)
    groups: dict[int, list[str]] = {}
    for key in sorted(by_pair, key=pair_order.__getitem__):
        groups.setdefault(by_pair[key][0]["target_turns"], []).append(key)
    rng = random.Random(seed)
    chosen = []
    for g in sorted(groups):
        keys = groups[g] if not per_group or per_group >= len(groups[g]) else rng.sample(groups[g], per_group)
        for key in keys:
            options = sorted(by_pair[key], key=lambda c: c["conv"])
            chosen.append(options[rng.randrange(len(options))])
    return chosen


def run(args: argparse.Namespace) -> None:
    pairs = load_pairs(args.tasks, args.personas)
    by_key = {p.key: p for p in pairs}
    prompts = load_prompt_set(args.prompts)
    chosen = select(
        load_conversations(args.conversations), {p.key: p.index for p in pairs}, args.pairs_per_group, args.seed
    )
    inputs = [prompts.winrate_answer(by_key[c["pair"]].name, by_key[c["pair"]].task, c["turns"]) for c in chosen]
    gen = generation.generate(
        args, "winrate_answer", inputs, [(c["pair"], c["conv"]) for c in chosen], prompt_set=args.prompts, n=1
    )
    recs = [
        {"pair": c["pair"], "conv": c["conv"], "group": c["target_turns"], "text": o[0]}
        for c, o in zip(chosen, gen.outputs, strict=True)
    ]
    write_jsonl(args.output, recs, gen.meta)
    log.info("wrote %d answers", len(recs))
