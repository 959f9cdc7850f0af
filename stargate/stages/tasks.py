"""Tasks per split: from a JSON file shipped with the project, or from a HF dataset's first human turns."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import InputError, StargateError
from ..log import get_logger
from ..records import write_jsonl
from .common import parse_json_arg

log = get_logger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--split", required=True, choices=["A", "B", "test"])
    p.add_argument("--spec", required=True, help="the data.tasks config as JSON")
    p.add_argument("--output", required=True)


def first_human_turn(prompt: str) -> str:
    """Spec §2.1: `prompt[:prompt.find('Assistant: ')].strip()[len('Human: '):]`, then stripped."""
    return prompt[: prompt.find("Assistant: ")].strip()[len("Human: ") :].strip()


def read_split_file(path: str | Path, split: str, what: str) -> list[str]:
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file does not exist", fix=f"set data.{what}.path to an existing JSON file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(path, f"not valid JSON ({exc.msg})", exc.lineno) from None
    if not isinstance(data, dict) or split not in data:
        raise InputError(path, f"no key '{split}'", fix=f'the file must be an object {{"A": [...], "B": [...], "test": [...]}} of {what}')
    items = data[split]
    if not isinstance(items, list) or not items:
        raise InputError(path, f"'{split}' must be a non-empty list of strings")
    for i, item in enumerate(items):
        if not isinstance(item, str) or not item.strip():
            raise InputError(path, f"{split}[{i}] is empty or not a string", fix=f"give every {what[:-1]} as text")
    return [s.strip() for s in items]


def run(args: argparse.Namespace) -> None:
    spec = parse_json_arg(args.spec, "--spec")
    if spec["source"] == "file":
        texts = read_split_file(spec["path"], args.split, "tasks")
        origin = spec["path"]
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
