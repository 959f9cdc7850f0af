"""Gold responses: the Oracle sees the full persona and the task (never a conversation), spec §2.4."""

from __future__ import annotations

import argparse

from ..errors import StargateError
from ..log import get_logger
from ..prompts import load_prompt_set
from ..records import write_jsonl
from . import generation
from .common import add_data_arguments, add_role_arguments, load_pairs

log = get_logger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_data_arguments(p)
    p.add_argument("--output", required=True)
    add_role_arguments(p)


def run(args: argparse.Namespace) -> None:
    pairs = load_pairs(args.tasks, args.personas)
    prompts = load_prompt_set(args.prompts)
    gen = generation.generate(args, "oracle", [prompts.oracle(p.persona, p.task) for p in pairs],
                              [(p.key,) for p in pairs], prompt_set=args.prompts, n=1)
    recs = [{"pair": p.key, "task_id": p.task_id, "persona_id": p.persona_id, "text": o[0]}
            for p, o in zip(pairs, gen.outputs, strict=True)]
    empty = [r["pair"] for r in recs if not r["text"].strip()]
    if empty:
        # an empty gold answer cannot be scored: fail loudly rather than train on a meaningless reward
        raise StargateError(f"the oracle returned {len(empty)} empty gold response(s), e.g. for {empty[0]}; "
                            "raise roles.oracle.sampling.max_tokens or change the oracle model")
    write_jsonl(args.output, recs, gen.meta)
    log.info("wrote %d gold responses", len(recs))
