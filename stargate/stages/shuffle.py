"""Shuffled control (spec §6.1): each persona gets another persona's conversations for the same task.

For every task the personas' conversation lists are rotated by an offset drawn in 1..P-1, so no
persona keeps its own. The records keep the scored pair's key and name the pair they came from.
"""

from __future__ import annotations

import argparse
import random

from ..errors import StargateError
from ..log import get_logger
from ..records import write_jsonl
from .common import load_conversations, load_pairs

log = get_logger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--conversations", required=True)
    p.add_argument("--tasks", required=True)
    p.add_argument("--personas", required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--output", required=True)


def run(args: argparse.Namespace) -> None:
    pairs = load_pairs(args.tasks, args.personas)
    personas = list(dict.fromkeys(p.persona_id for p in pairs))
    tasks = list(dict.fromkeys(p.task_id for p in pairs))
    if len(personas) < 2:
        raise StargateError("the shuffled control needs at least 2 personas in the split")
    by_pair: dict[str, list[dict]] = {}
    for c in load_conversations(args.conversations):
        by_pair.setdefault(c["pair"], []).append(c)
    rng = random.Random(args.seed)  # once, then one draw per task in task order, like the original
    out = []
    for task_id in tasks:
        offset = rng.randint(1, len(personas) - 1)
        for j, persona_id in enumerate(personas):
            source = f"{task_id}|{personas[(j + offset) % len(personas)]}"
            for c in by_pair[source]:
                out.append({**c, "pair": f"{task_id}|{persona_id}", "persona_id": persona_id, "source_pair": source})
    order = {p.key: p.index for p in pairs}
    out.sort(key=lambda c: (order[c["pair"]], c["conv"]))
    write_jsonl(args.output, out, {"stage": "shuffle", "seed": args.seed})
    log.info("shuffled %d conversations over %d tasks", len(out), len(tasks))
