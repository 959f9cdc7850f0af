"""What several stages share: reading the data artifacts, pairing them, their command-line arguments.
(Opening a role's backend and generating are in generation.py.)"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError, StargateError
from ..log import get_logger
from ..records import read_jsonl, read_meta

log = get_logger(__name__)


@dataclass(frozen=True)
class Pair:
    key: str
    index: int  # position in the split's stable pair order (persona-major, like the original)
    task_id: str
    persona_id: str
    task: str
    persona: str
    name: str


def pair_key(task_id: str, persona_id: str) -> str:
    return f"{task_id}|{persona_id}"


def load_tasks(path: str | Path) -> list[dict]:
    recs = read_jsonl(path, required=("task_id", "split", "text"), nonempty=("task_id", "text"))
    _unique(path, recs, "task_id")
    return recs


def load_personas(path: str | Path) -> list[dict]:
    recs = read_jsonl(path, required=("persona_id", "split", "name", "text"), nonempty=("persona_id", "name", "text"))
    _unique(path, recs, "persona_id")
    return recs


def _unique(path, recs: list[dict], field: str) -> None:
    seen: dict[str, int] = {}
    for lineno, r in enumerate(recs, start=1):
        if r[field] in seen:
            raise InputError(path, f"duplicate {field} '{r[field]}' (first on line {seen[r[field]]})", lineno)
        seen[r[field]] = lineno


def load_pairs(tasks_path: str | Path, personas_path: str | Path) -> list[Pair]:
    """Every persona-task pair of a split, in a stable order. Checks the two files belong to one split."""
    tasks, personas = load_tasks(tasks_path), load_personas(personas_path)
    splits = {r["split"] for r in tasks} | {r["split"] for r in personas}
    if len(splits) != 1:
        raise InputError(
            personas_path,
            f"tasks ({tasks_path}) and personas come from different splits {sorted(splits)}",
            fix="pass the task and persona files of the same split",
        )
    pairs = []
    for p in personas:
        for t in tasks:
            pairs.append(
                Pair(
                    pair_key(t["task_id"], p["persona_id"]),
                    len(pairs),
                    t["task_id"],
                    p["persona_id"],
                    t["text"],
                    p["text"],
                    p["name"],
                )
            )
    return pairs


def pairs_by_key(tasks_path, personas_path) -> dict[str, Pair]:
    return {p.key: p for p in load_pairs(tasks_path, personas_path)}


def lookup_pair(pairs: dict[str, Pair], key: str, path, lineno: int) -> Pair:
    try:
        return pairs[key]
    except KeyError:
        raise InputError(
            path,
            f"pair '{key}' is not a pair of the given task and persona files",
            lineno,
            "the files are misaligned: rebuild this artifact from the current tasks/personas",
        ) from None


def load_gold(path: str | Path, pairs: dict[str, Pair]) -> dict[str, str]:
    """Gold text per pair. Pairs the oracle stage dropped (refused/blank, listed in its .meta.json) have none;
    a blank text is accepted only for the pairs its .meta.json lists as kept blank (`blank`, paper_v1)."""
    meta = read_meta(path)
    kept_blank = set(meta.get("blank", []))
    recs = read_jsonl(path, required=("pair", "text"))
    gold = {}
    for lineno, r in enumerate(recs, start=1):
        lookup_pair(pairs, r["pair"], path, lineno)
        if not isinstance(r["text"], str) or (not r["text"].strip() and r["pair"] not in kept_blank):
            raise InputError(path, "field 'text' is empty", lineno)
        gold[r["pair"]] = r["text"]
    dropped = set(meta.get("refused", [])) | set(meta.get("unusable", []))
    missing = [k for k in pairs if k not in gold and k not in dropped]
    if missing:
        raise InputError(
            path,
            f"{len(missing)} pair(s) have no gold response, e.g. '{missing[0]}'",
            fix="rerun the oracle stage for this split",
        )
    return gold


def load_conversations(path: str | Path, allow_empty: bool = False) -> list[dict]:
    return read_jsonl(path, required=("pair", "conv", "target_turns", "turns"), allow_empty=allow_empty)


def rng_for(*parts: Any) -> random.Random:
    """A private RNG seeded from a string, so draws do not depend on library code touching `random`."""
    return random.Random("|".join(str(p) for p in parts))


# ----------------------------------------------------------------------------- arguments
def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """The split's tasks and named personas, and the prompt set: what every pair-level stage reads."""
    parser.add_argument("--tasks", required=True, help="tasks of the split (JSONL)")
    parser.add_argument("--personas", required=True, help="named personas of the split (JSONL)")
    parser.add_argument("--prompts", required=True, help="prompt set name, e.g. fixed_v1")


def add_role_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """The role's config and model. `required=False`: a stage that can run without its role (data from files)."""
    parser.add_argument("--role", required=required, help="role config as JSON: {backend, options, sampling}")
    parser.add_argument("--model", required=required, help="model folder (hf, vllm) or API model name (openai)")
    parser.add_argument("--gpus", type=int, default=0, help="GPUs given to this job (0 = CPU)")


def parse_json_arg(text: str, flag: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StargateError(f"{flag} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise StargateError(f"{flag} must be a JSON object")
    return value
