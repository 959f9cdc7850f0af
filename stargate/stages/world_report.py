"""`stargate world-report`: did the loop learn in the world (stargate/world)? Test-split figures per iteration.

* qa-experimental: mean m0 log p(gold | conversation) (per pair, the mean of its conversations; then the
  mean over pairs), and m_t - m0 with a paired bootstrap 95 % interval over pairs;
* elicited: the share of the task's relevant attributes the user revealed, and the same bootstrap;
* what the Questioner asks about: the share of questions touching each attribute, and the share touching
  a relevant one;
* one example conversation per iteration for the same pair.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from typing import Any

from .. import world
from ..errors import InputError
from ..evaluation.logprobs import paired_difference
from ..log import get_logger
from ..records import read_jsonl, write_json
from .common import load_conversations, pairs_by_key

log = get_logger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--logprobs", nargs="+", required=True, help="results/m{t}/logprobs/test.qa-experimental.jsonl, t=0..T"
    )
    p.add_argument("--conversations", nargs="+", required=True, help="results/m{t}/conversations/test.jsonl, t=0..T")
    p.add_argument("--tasks", required=True)
    p.add_argument("--personas", required=True)
    p.add_argument("--resamples", type=int, default=2000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--run", default="{}", help="which config produced the run (JSON, as summarize's --run)")
    p.add_argument("--output", required=True, help="JSON report")


def per_pair_mean(values: list[tuple[str, float]]) -> dict[str, float]:
    by: dict[str, list[float]] = {}
    for pair, v in values:
        by.setdefault(pair, []).append(v)
    return {p: sum(v) / len(v) for p, v in by.items()}


def paired_bootstrap(a: list[dict], b: list[dict], resamples: int, seed: int) -> dict[str, Any]:
    """Mean of b - a over the (pair, conversation) rows both have, and its 95 % interval with pairs resampled:
    the summary's own computation (evaluation.logprobs.paired_difference, the same seed and resamples), so a
    difference has one interval in world.json and in logprob_differences.csv."""
    import pandas as pd

    before, after = pd.DataFrame.from_records(a), pd.DataFrame.from_records(b)
    if before.empty or after.empty or not set(before["pair"]) & set(after["pair"]):
        raise InputError("world-report", "the iterations share no scored pair")
    d = paired_difference(before, after, resamples, seed)
    return {"mean": d["difference"], "ci95": [d["ci_low"], d["ci_high"]], "n_pairs": d["n_pairs"]}


def run(args: argparse.Namespace) -> None:
    if len(args.logprobs) != len(args.conversations):
        raise InputError(args.logprobs[0], "give one logprobs file and one conversations file per iteration")
    pairs = pairs_by_key(args.tasks, args.personas)
    report: dict[str, Any] = {"run": json.loads(args.run), "iterations": []}
    base_lp = base_el = None
    for t, (lp_path, conv_path) in enumerate(zip(args.logprobs, args.conversations, strict=True)):
        scored = read_jsonl(lp_path, required=("pair", "conv", "logprob"))
        lps = per_pair_mean([(r["pair"], r["logprob"]) for r in scored])
        lp_rows = [{"pair": r["pair"], "conv": r["conv"], "logprob": r["logprob"]} for r in scored]
        convs = load_conversations(conv_path)
        elicited, el_rows, topics, relevant_asked, n_questions = [], [], Counter(), 0, 0
        for c in convs:
            p = pairs[c["pair"]]
            elicited.append((c["pair"], world.elicited(c["turns"], p.persona, p.task)))
            el_rows.append({"pair": c["pair"], "conv": c["conv"], "logprob": elicited[-1][1]})
            relevant = world.TASK_BY_TEXT[p.task.strip()].relevant
            for turn in c["turns"]:
                if turn["role"] == "questioner":
                    about = world.asked_about(turn["text"])
                    topics.update(about)
                    relevant_asked += any(a in relevant for a in about)
                    n_questions += 1
        el = per_pair_mean(elicited)
        row: dict[str, Any] = {
            "t": t,
            "qa_experimental": sum(lps.values()) / len(lps),
            "elicited": sum(el.values()) / len(el),
            "questions_about_a_relevant_attribute": relevant_asked / max(1, n_questions),
            "questions_about": {a: topics[a] / max(1, n_questions) for a in world.ATTRIBUTES},
            "example": next((c for c in convs if c["pair"] == sorted(pairs)[0]), convs[0]),
        }
        if t == 0:
            base_lp, base_el = lp_rows, el_rows
        else:
            row["qa_experimental_vs_m0"] = paired_bootstrap(base_lp, lp_rows, args.resamples, args.seed)
            row["elicited_vs_m0"] = paired_bootstrap(base_el, el_rows, args.resamples, args.seed)
        report["iterations"].append(row)
        vs = row.get("qa_experimental_vs_m0")
        log.info(
            "m%d: qa-experimental %.2f, elicited %.2f, questions about a relevant attribute %.2f%s",
            t,
            row["qa_experimental"],
            row["elicited"],
            row["questions_about_a_relevant_attribute"],
            f" | vs m0 {vs['mean']:+.2f} [{vs['ci95'][0]:.2f}, {vs['ci95'][1]:.2f}]" if vs else "",
        )
    write_json(args.output, report)
