"""SFT examples (spec §3.6, prompts §8): the kept conversation without any instruction, then m_t's answer."""

from __future__ import annotations

import argparse

from ..errors import InputError
from ..log import get_logger
from ..prompts import load_prompt_set, provenance
from ..records import read_jsonl, write_jsonl
from .common import add_data_arguments, load_conversations, lookup_pair, pairs_by_key

log = get_logger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--topk", required=True)
    p.add_argument("--responses", required=True, help="regularizer responses; 'none' trains on questions only")
    add_data_arguments(p)
    p.add_argument("--output", required=True)


def run(args: argparse.Namespace) -> None:
    pairs = pairs_by_key(args.tasks, args.personas)
    prompts = load_prompt_set(args.prompts)
    answers = {
        (r["pair"], r["conv"]): r["text"] for r in read_jsonl(args.responses, required=("pair", "conv", "text"))
    }
    recs, n_empty = [], 0
    for lineno, c in enumerate(load_conversations(args.topk), start=1):
        p = lookup_pair(pairs, c["pair"], args.topk, lineno)
        if (c["pair"], c["conv"]) not in answers:
            raise InputError(
                args.responses,
                f"no regularizer response for {c['pair']} #{c['conv']}",
                fix="rerun the regularize stage on the current top-k file",
            )
        final = answers[(c["pair"], c["conv"])]
        n_empty += not final.strip()
        recs.append(
            {"pair": c["pair"], "conv": c["conv"], "messages": prompts.sft_messages(p.name, p.task, c["turns"], final)}
        )
    if n_empty:
        log.warning("%d examples have an empty final answer (kept: the questions are still trained)", n_empty)
    write_jsonl(args.output, recs, {"stage": "sft_data", "n_empty_final": n_empty, **provenance(args.prompts)})
    log.info("wrote %d SFT examples", len(recs))
