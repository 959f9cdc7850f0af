"""One Questioner turn of the simulation (spec §3.1), for one shard of the split's pairs.

Turn 1 starts `n` conversations per pair from `n` samples of the same prompt and draws the pair's turn
count (uniform in [min_turns, max_turns], per pair, from a seed: the same pairs get the same counts for
every m_t). Later turns add one sampled question to every still-open conversation. The input file is
never modified; the output holds every conversation with its new question appended.

Seeds (stargate.seeding): turn 1 samples the pair's n opening questions from one prompt keyed
(pair, None, 1), so conversation c gets that seed + c; a later turn keys each conversation's prompt
(pair, conv, turn). Neither depends on the shard, the batch or the other conversations.
"""

from __future__ import annotations

import argparse

from ..errors import StargateError
from ..log import get_logger
from ..prompts import load_prompt_set
from ..records import write_jsonl
from . import generation
from .common import add_data_arguments, add_role_arguments, load_conversations, load_pairs, lookup_pair, rng_for

log = get_logger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--turn", type=int, required=True)
    add_data_arguments(p)
    p.add_argument("--open", help="conversations still open after the previous turn (turn > 1)")
    p.add_argument("--iteration", type=int, required=True, help="t of the Questioner m_t (0 = base model)")
    p.add_argument("--shard", type=int, required=True)
    p.add_argument("--shards", type=int, required=True)
    p.add_argument("--conversations", type=int, required=True, help="conversations per pair (turn 1)")
    p.add_argument("--min-turns", type=int, required=True)
    p.add_argument("--max-turns", type=int, required=True)
    p.add_argument("--seed", type=int, required=True, help="seed of the turn-count draw")
    p.add_argument("--output", required=True)
    add_role_arguments(p)


def start_conversations(args, pairs) -> list[dict]:
    mine = [p for p in pairs if p.index % args.shards == args.shard]
    convs = []
    for p in mine:
        target = rng_for("turns", args.seed, p.key).randint(args.min_turns, args.max_turns)
        for c in range(args.conversations):
            convs.append(
                {
                    "pair": p.key,
                    "task_id": p.task_id,
                    "persona_id": p.persona_id,
                    "conv": c,
                    "target_turns": target,
                    "turns": [],
                }
            )
    return convs


def ask(args, prompts, by_key, convs: list[dict], turn: int, finetuned: bool, n: int, backend=None):
    """Append one sampled question to every conversation (in place); the generation's meta comes back.
    `args` carries the role (`role`, `model`, `gpus`); `backend`: an already loaded one (see simulate)."""
    if turn == 1:
        # one prompt per pair, n samples: the pair's n conversations start from its n questions
        heads = [c for c in convs if c["conv"] == 0]
        inputs = [prompts.questioner(by_key[c["pair"]].name, by_key[c["pair"]].task, [], finetuned) for c in heads]
        gen = generation.generate(
            args,
            "questioner_turn",
            inputs,
            [(c["pair"], None, 1) for c in heads],
            prompt_set=args.prompts,
            backend=backend,
            n=n,
        )
        questions = {c["pair"]: o for c, o in zip(heads, gen.outputs, strict=True)}
        for c in convs:
            c["turns"] = [{"role": "questioner", "text": questions[c["pair"]][c["conv"]]}]
    else:
        inputs = [
            prompts.questioner(by_key[c["pair"]].name, by_key[c["pair"]].task, c["turns"], finetuned) for c in convs
        ]
        gen = generation.next_turn(args, "questioner_turn", "questioner", convs, inputs, turn, backend)
    return gen


def run(args: argparse.Namespace) -> None:
    if not 0 <= args.shard < args.shards:
        raise StargateError(f"--shard {args.shard} is outside 0..{args.shards - 1}")
    pairs = load_pairs(args.tasks, args.personas)
    by_key = {p.key: p for p in pairs}
    prompts = load_prompt_set(args.prompts)
    if args.turn == 1:
        convs = start_conversations(args, pairs)
    else:
        if not args.open:
            raise StargateError("turns after the first need --open (the previous turn's open conversations)")
        convs = load_conversations(args.open, allow_empty=True)
        for lineno, c in enumerate(convs, start=1):
            lookup_pair(by_key, c["pair"], args.open, lineno)
            if len(c["turns"]) != 2 * (args.turn - 1):
                raise StargateError(
                    f"{args.open}:{lineno}: conversation has {len(c['turns'])} turns, "
                    f"expected {2 * (args.turn - 1)} before turn {args.turn}"
                )
    gen = ask(args, prompts, by_key, convs, args.turn, args.iteration > 0, args.conversations)
    meta = {**gen.meta, "turn": args.turn, "iteration": args.iteration, "shard": args.shard, "shards": args.shards}
    write_jsonl(args.output, convs, meta)
    log.info("turn %d: %d questions asked", args.turn, len(convs))
