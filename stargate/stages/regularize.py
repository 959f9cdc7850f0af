"""Regularizer responses (spec §3.5): m_t writes its own final answer after each kept conversation.

This is m_t's answer, not the Oracle's gold: it keeps the fine-tuned Questioner able to answer with
what it elicited instead of only asking.
"""

from __future__ import annotations

import argparse

from ..log import get_logger
from ..prompts import load_prompt_set
from ..records import write_jsonl
from . import generation
from .common import add_data_arguments, add_role_arguments, load_conversations, lookup_pair, pairs_by_key

log = get_logger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--topk", required=True, help="kept conversations")
    add_data_arguments(p)
    p.add_argument("--output", required=True)
    add_role_arguments(p)


def run(args: argparse.Namespace) -> None:
    pairs = pairs_by_key(args.tasks, args.personas)
    prompts = load_prompt_set(args.prompts)
    convs = load_conversations(args.topk)
    inputs = []
    for lineno, c in enumerate(convs, start=1):
        p = lookup_pair(pairs, c["pair"], args.topk, lineno)
        inputs.append(prompts.regularizer(p.name, p.task, c["turns"]))
    gen = generation.generate(
        args, "regularize", inputs, [(c["pair"], c["conv"]) for c in convs], prompt_set=args.prompts, n=1
    )
    recs = [{"pair": c["pair"], "conv": c["conv"], "text": o[0]} for c, o in zip(convs, gen.outputs, strict=True)]
    write_jsonl(args.output, recs, gen.meta)
    log.info("wrote %d regularizer responses", len(recs))
