"""One Roleplayer turn: the simulated user answers the latest question in character (spec §3.1).

Conversations that reached their pair's turn count go to `--done`; the rest to `--open` for the
next Questioner turn. The input is never modified.
"""

from __future__ import annotations

import argparse

from ..errors import StargateError
from ..log import get_logger
from ..prompts import load_prompt_set
from ..records import write_jsonl
from . import generation
from .common import add_data_arguments, add_role_arguments, load_conversations, load_pairs, lookup_pair

log = get_logger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--turn", type=int, required=True)
    p.add_argument("--asked", required=True, help="conversations whose latest turn is a question")
    add_data_arguments(p)
    p.add_argument("--done", required=True, help="output: conversations finished at this turn")
    p.add_argument("--open", required=True, help="output: conversations that go on")
    add_role_arguments(p)


def answer(args, prompts, by_key, convs: list[dict], turn: int, backend=None):
    """Append the Roleplayer's answer to every conversation (in place); the generation's meta comes back.
    `args` carries the role (`role`, `model`, `gpus`); `backend`: an already loaded one (see simulate)."""
    inputs = [
        prompts.roleplayer(by_key[c["pair"]].persona, by_key[c["pair"]].task, by_key[c["pair"]].name, c["turns"])
        for c in convs
    ]
    return generation.next_turn(args, "roleplayer_turn", "roleplayer", convs, inputs, turn, backend)


def split_finished(convs: list[dict], turn: int) -> tuple[list[dict], list[dict]]:
    """(finished at this turn, still open): a conversation ends at its pair's drawn turn count."""
    return [c for c in convs if c["target_turns"] <= turn], [c for c in convs if c["target_turns"] > turn]


def run(args: argparse.Namespace) -> None:
    by_key = {p.key: p for p in load_pairs(args.tasks, args.personas)}
    prompts = load_prompt_set(args.prompts)
    convs = load_conversations(args.asked, allow_empty=True)
    for lineno, c in enumerate(convs, start=1):
        lookup_pair(by_key, c["pair"], args.asked, lineno)
        if len(c["turns"]) != 2 * args.turn - 1 or c["turns"][-1]["role"] != "questioner":
            raise StargateError(f"{args.asked}:{lineno}: expected {2 * args.turn - 1} turns ending with a question")
    gen = answer(args, prompts, by_key, convs, args.turn)
    meta = {**gen.meta, "turn": args.turn}
    done, still_open = split_finished(convs, args.turn)
    write_jsonl(args.done, done, meta)
    write_jsonl(args.open, still_open, meta)
    log.info("turn %d: %d finished, %d open", args.turn, len(done), len(still_open))
