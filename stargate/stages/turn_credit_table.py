"""`stargate turn-credit-table`: the credit of each question, per questioner, from the turn-credit files.

    stargate turn-credit-table --credit results/m0/credit/test.jsonl ... --output results/summary/<run>/turn_credit.csv

One row per (questioner t, question k): the mean gain in m0's log p(gold) the k-th question-answer exchange
brought (log p after k exchanges minus after k - 1), its standard error and count, and the same for info_gain
when the files have it. A question that helps shows a positive mean gain.
"""

from __future__ import annotations

import argparse
import csv
import math
import re
from pathlib import Path

from ..errors import InputError
from ..records import read_jsonl


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--credit", nargs="+", required=True, help="results/m{t}/credit/test.jsonl, one per questioner")
    p.add_argument("--output", required=True)


def mean_sem(values: list[float]) -> tuple[float, float]:
    n = len(values)
    m = sum(values) / n
    sem = math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1) / n) if n > 1 else 0.0
    return m, sem


def run(args: argparse.Namespace) -> None:
    out = []
    for path in args.credit:
        m = re.search(r"m(\d+)/credit/", path)
        if not m:
            raise InputError(path, "not a results/m{t}/credit/ file", fix="pass the turn_credit rule's outputs")
        rows = read_jsonl(path, required=("k", "gain"))
        for k in sorted({r["k"] for r in rows if r["k"]}):
            gains = [r["gain"] for r in rows if r["k"] == k]
            g, sem = mean_sem(gains)
            rec = {"t": int(m.group(1)), "question": k, "mean_gain": g, "sem": sem, "n": len(gains)}
            info = [r["info_gain_gain"] for r in rows if r["k"] == k and r.get("info_gain_gain") is not None]
            rec["mean_info_gain_gain"] = mean_sem(info)[0] if info else None
            out.append(rec)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    with open(args.output, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["t", "question", "mean_gain", "sem", "n", "mean_info_gain_gain"])
        w.writeheader()
        w.writerows(out)
