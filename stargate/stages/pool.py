"""Pool the finished conversations of every turn and shard into one file per split (spec §3.2).

Checks that every pair of the split has exactly `n` conversations, each with as many exchanges as the
pair drew, and sums the empty-generation counts of the turn files into the pooled file's sidecar.
"""

from __future__ import annotations

import argparse

from ..errors import StargateError
from ..log import get_logger
from ..records import read_meta, write_jsonl
from .common import load_conversations, load_pairs

log = get_logger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--finished", nargs="+", required=True, help="turn{k}.done.jsonl files of all shards")
    p.add_argument("--asked", nargs="*", default=[], help="questioner turn files (for their empty counts)")
    p.add_argument("--tasks", required=True)
    p.add_argument("--personas", required=True)
    p.add_argument("--conversations", type=int, required=True, help="expected conversations per pair")
    p.add_argument("--output", required=True)


def run(args: argparse.Namespace) -> None:
    pairs = load_pairs(args.tasks, args.personas)
    order = {p.key: p.index for p in pairs}
    convs, n_empty = [], 0
    for path in args.finished:
        convs += load_conversations(path, allow_empty=True)
        n_empty += int(read_meta(path).get("n_empty", 0))
    for path in args.asked:
        n_empty += int(read_meta(path).get("n_empty", 0))
    counts: dict[str, int] = {}
    for c in convs:
        if c["pair"] not in order:
            raise StargateError(f"conversation for unknown pair {c['pair']}: turn files and tasks/personas differ")
        if len(c["turns"]) != 2 * c["target_turns"]:
            raise StargateError(
                f"pair {c['pair']} conv {c['conv']} has {len(c['turns'])} turns, expected {2 * c['target_turns']}"
            )
        counts[c["pair"]] = counts.get(c["pair"], 0) + 1
    wrong = [(k, counts.get(k, 0)) for k in order if counts.get(k, 0) != args.conversations]
    if wrong:
        raise StargateError(f"{len(wrong)} pair(s) do not have {args.conversations} conversations, e.g. {wrong[0]}")
    convs.sort(key=lambda c: (order[c["pair"]], c["conv"]))
    empty_turns = sum(1 for c in convs for t in c["turns"] if not t["text"].strip())
    by_turns = {}
    for c in convs:
        by_turns[c["target_turns"]] = by_turns.get(c["target_turns"], 0) + 1
    write_jsonl(
        args.output,
        convs,
        {"stage": "pool", "n_empty": n_empty, "n_empty_turns": empty_turns, "conversations_by_turns": by_turns},
    )
    log.info("pooled %d conversations of %d pairs (%d empty turns)", len(convs), len(order), empty_turns)
