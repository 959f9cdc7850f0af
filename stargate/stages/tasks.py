"""Tasks per split: from a JSON file, or from a HF dataset's first human turns.

A file is an object {"A": [...], "B": [...], "test": [...]}, or the original's JSON list: one list per
split (`{split}` in the configured path), or one list the splits are row ranges of (`rows`, spec §2.1).
"""

from __future__ import annotations

import argparse

from ..errors import StargateError
from ..log import get_logger
from ..records import write_jsonl
from ..released import read_tasks
from .common import parse_json_arg

log = get_logger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--split", required=True, choices=["A", "B", "test"])
    p.add_argument("--spec", required=True, help="the data.tasks config as JSON")
    p.add_argument("--output", required=True)


def first_human_turn(prompt: str) -> str:
    """Spec §2.1: `prompt[:prompt.find('Assistant: ')].strip()[len('Human: '):]`, then stripped."""
    return prompt[: prompt.find("Assistant: ")].strip()[len("Human: ") :].strip()


def run(args: argparse.Namespace) -> None:
    spec = parse_json_arg(args.spec, "--spec")
    if spec["source"] == "file":
        rows = (spec.get("rows") or {}).get(args.split)
        texts = read_tasks(spec["path"], args.split, rows, bool(spec.get("per_split")))
        origin = f"{spec['path']}[{rows[0]}:{rows[1]}]" if rows else spec["path"]
    elif spec["source"] == "hf_dataset":
        from datasets import load_dataset

        lo, hi = spec["rows"][args.split]
        ds = load_dataset(spec["dataset"], split=spec.get("dataset_split", "train"))
        if hi > len(ds):
            raise StargateError(f"data.tasks.rows.{args.split}: row {hi} is past the dataset's {len(ds)} rows")
        texts = [first_human_turn(ds[i][spec.get("column", "prompt")]) for i in range(lo, hi)]
        origin = f"{spec['dataset']}[{lo}:{hi}]"
    else:
        raise StargateError(f"data.tasks.source: unknown source '{spec['source']}' (file or hf_dataset)")
    empty = [i for i, t in enumerate(texts) if not t]
    if empty:
        raise StargateError(f"{origin}: task(s) {empty[:5]} are empty after extraction")
    recs = [{"task_id": f"{args.split}-t{i:04d}", "split": args.split, "text": t} for i, t in enumerate(texts)]
    write_jsonl(args.output, recs, {"stage": "tasks", "source": origin})
    log.info("wrote %d %s tasks from %s", len(recs), args.split, origin)
