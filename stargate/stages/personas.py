"""Persona texts per split: from a file, or written by the persona_generator role from few-shot seeds.

Spec §2.2: one message per persona, each with two seed personas drawn by `random.sample(range(n), 2)`
after a single `random.seed(1)`; A and B therefore share the same seed-pair sequence. Names are not
extracted here: that is the `names` stage.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from ..errors import InputError, StargateError
from ..log import get_logger
from ..prompts import load_prompt_set
from ..records import write_jsonl
from ..released import read_personas
from . import generation
from .common import parse_json_arg

log = get_logger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--split", required=True, choices=["A", "B", "test"])
    p.add_argument("--spec", required=True, help="the data.personas config as JSON")
    p.add_argument("--prompts", required=True, help="prompt set name")
    p.add_argument("--output", required=True)
    p.add_argument("--role", help="persona_generator role as JSON (source: generate)")
    p.add_argument("--model", help="persona generator model (source: generate)")
    p.add_argument("--gpus", type=int, default=0)


def load_seeds(path: str | Path, split: str) -> list[str]:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(path, f"cannot read seed personas ({exc})") from None
    # the original seeds train splits with 21 PRODIGy characters and test with 24 (spec §2.2)
    key = "test" if split == "test" else "train"
    seeds = data.get(key) if isinstance(data, dict) else data
    if not isinstance(seeds, list) or len(seeds) < 2:
        raise InputError(path, f"needs a list of at least 2 seed personas for split '{split}'")
    return seeds


def run(args: argparse.Namespace) -> None:
    spec = parse_json_arg(args.spec, "--spec")
    if spec["source"] == "file":
        texts = read_personas(spec["path"], args.split, bool(spec.get("per_split")))
        meta = {"stage": "personas", "source": spec["path"]}
    elif spec["source"] == "generate":
        if not (args.role and args.model):
            raise StargateError("data.personas.source 'generate' needs the persona_generator role (--role/--model)")
        prompts = load_prompt_set(args.prompts)
        seeds = load_seeds(spec["seeds"], args.split)
        count = int(spec["count"][args.split])
        rng = random.Random(int(spec.get("seed", 1)))
        messages = []
        for _ in range(count):
            a, b = rng.sample(range(len(seeds)), 2)
            messages.append(prompts.persona_generation(seeds[a], seeds[b]))
        gen = generation.generate(
            args, "personas", messages, [(args.split, i) for i in range(count)], prompt_set=args.prompts, n=1
        )
        texts = [(o[0] or "").strip() for o in gen.outputs]  # None: refused by a content filter
        meta = {**gen.meta, "source": "generate", "seeds": spec["seeds"]}
        empty = [i for i, t in enumerate(texts) if not t]
        if empty:
            raise StargateError(
                f"the persona generator returned {len(empty)} empty persona(s) (indices {empty[:5]}); "
                "raise roles.persona_generator.sampling.max_tokens or change the model"
            )
    else:
        raise StargateError(f"data.personas.source: unknown source '{spec['source']}' (file or generate)")
    recs = [{"persona_id": f"{args.split}-p{i:02d}", "split": args.split, "text": t} for i, t in enumerate(texts)]
    write_jsonl(args.output, recs, meta)
    log.info("wrote %d %s personas", len(recs), args.split)
