"""The query-specificity rating of the test tasks (spec §6.1, prompts file §11), the paper's "GPT-4-rated"
general/specific breakdown.

The judge role rates every task of the split from 1 (very user-specific) to 6 (very general), with the
original's texts (`gpt-4-general-vs-specific/rate-specificity.py`: RATING_SYS_PROMPTS[0], RATING_PROMPTS[0]
with the stripped task, one call per task); a rating <= 4 labels the task "specific", >= 5 "general"
(`plot-categories.py`). Under paper_v1 the rating is parsed as the original parsed it (`int(...)` of the
text after "Final Response:", 0 when that fails, so a refused or unparsable reply counts as specific);
under fixed_v1 a reply without a 1-6 after the anchor leaves the task unrated (no label). The summary splits
qa-experimental (all and top-1) by these labels beside the hand labels (`stargate summarize --specificity`).
Runs only when `evaluation.specificity_rating` is on (rules/specificity.smk).
"""

from __future__ import annotations

import argparse

from ..log import get_logger
from ..prompts import load_prompt_set, stage_template_digest
from ..records import write_jsonl
from . import generation
from .common import add_role_arguments, load_tasks

log = get_logger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tasks", required=True, help="tasks of the split to rate (JSONL)")
    p.add_argument("--prompts", required=True, help="prompt set name, e.g. paper_v1")
    p.add_argument("--output", required=True)
    add_role_arguments(p)


def run(args: argparse.Namespace) -> None:
    tasks = load_tasks(args.tasks)
    prompts = load_prompt_set(args.prompts)
    gen = generation.generate(
        args,
        "specificity",
        [prompts.specificity(t["text"]) for t in tasks],
        [(t["task_id"],) for t in tasks],
        prompt_set=args.prompts,
        n=1,
    )
    recs, counts = [], {"general": 0, "specific": 0, None: 0}
    for t, out in zip(tasks, gen.outputs, strict=True):
        rating = prompts.parse_specificity(out[0])
        label = prompts.specificity_label(rating)
        counts[label] += 1
        recs.append({"task_id": t["task_id"], "rating": rating, "label": label, "reply": out[0]})
    meta = {
        **gen.meta,
        "templates_sha256": stage_template_digest(args.prompts, "specificity"),
        "rule": "rating <= 4: specific, >= 5: general",
        "n_general": counts["general"],
        "n_specific": counts["specific"],
        "n_unrated": counts[None],
    }
    write_jsonl(args.output, recs, meta)
    log.info(
        "rated %d tasks: %d general, %d specific, %d unrated",
        len(recs),
        counts["general"],
        counts["specific"],
        counts[None],
    )
