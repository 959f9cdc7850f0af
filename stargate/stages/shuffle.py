"""Shuffled control (spec §6.1): each persona gets another persona's conversations for the same task.

For every task the personas' conversation lists are rotated by an offset r drawn in 1..P-1 (one
`Random(seed)`, one draw per task in task order, as the original's `random.seed(1)` then `randint`), so no
persona keeps its own. The direction is the prompt set's (manifest key `shuffle_rotation`): paper_v1's
"original" gives persona j the conversations of persona j - r, as the original's `shuffle_dict_values`
did (`values[-r:] + values[:-r]`, shuffled-log-probs/utils.py); without a set, or under fixed_v1, persona j
gets those of j + r (this project's earlier rotation, kept so their artifacts do not change). The records
keep the scored pair's key and name the pair they came from.
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
    p.add_argument("--prompts", help="prompt set: its manifest's shuffle_rotation gives the direction (default j + r)")
    p.add_argument("--output", required=True)


ROTATIONS = ("plus", "original")


def rotation_of(prompt_set: str | None) -> str:
    """'original' (persona j gets j - r, the original's) or 'plus' (j + r)."""
    if not prompt_set:
        return "plus"
    from ..prompts import load_prompt_set

    return load_prompt_set(prompt_set).manifest.get("shuffle_rotation", "plus")


def source_index(j: int, offset: int, n: int, rotation: str) -> int:
    """The persona whose conversations persona j is scored with."""
    if rotation not in ROTATIONS:
        raise StargateError(f"shuffle_rotation '{rotation}' is not one of {', '.join(ROTATIONS)}")
    return (j - offset) % n if rotation == "original" else (j + offset) % n


def run(args: argparse.Namespace) -> None:
    pairs = load_pairs(args.tasks, args.personas)
    personas = list(dict.fromkeys(p.persona_id for p in pairs))
    tasks = list(dict.fromkeys(p.task_id for p in pairs))
    if len(personas) < 2:
        raise StargateError("the shuffled control needs at least 2 personas in the split")
    by_pair: dict[str, list[dict]] = {}
    for c in load_conversations(args.conversations):
        by_pair.setdefault(c["pair"], []).append(c)
    rotation = rotation_of(getattr(args, "prompts", None))
    rng = random.Random(args.seed)  # once, then one draw per task in task order, like the original
    out = []
    for task_id in tasks:
        offset = rng.randint(1, len(personas) - 1)
        for j, persona_id in enumerate(personas):
            source = f"{task_id}|{personas[source_index(j, offset, len(personas), rotation)]}"
            for c in by_pair[source]:
                out.append({**c, "pair": f"{task_id}|{persona_id}", "persona_id": persona_id, "source_pair": source})
    order = {p.key: p.index for p in pairs}
    out.sort(key=lambda c: (order[c["pair"]], c["conv"]))
    meta = {"stage": "shuffle", "seed": args.seed}
    if rotation != "plus":  # the sidecar of a run without a set (or fixed_v1) stays as it was
        meta["rotation"] = rotation
    write_jsonl(args.output, out, meta)
    log.info("shuffled %d conversations over %d tasks (rotation %s)", len(out), len(tasks), rotation)
