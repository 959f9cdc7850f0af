"""The summary's length-controlled win rates (stargate.evaluation.length_control): per configured variant,
questioner and trial; pooled over repeated trials (trial "all", a hierarchical interval); and the pooled rates
as figures of the trials table, so `stargate compare` sets them side by side."""

from __future__ import annotations

import numpy as np

from ..evaluation import length_control
from ..evaluation.outcomes import outcome
from ..evaluation.variants import parse as parse_variant
from ..records import read_jsonl
from .summary_judged import Judged


def length_rows(judged: Judged, configured: list[str], resamples: int, seed: int) -> list[dict]:
    """AlpacaEval-style LC win rate beside the raw rate of every configured variant, questioner and trial."""
    out = []
    for trial, tm in sorted(judged.by_trial.items()):
        for name in configured:
            v = parse_variant(name)
            answers = tm["answers"].get(v.answer_set) or {}
            for t in sorted(tm["judge"].get(v.answer_set) or {}):
                if t not in answers or 0 not in answers:
                    continue
                recs = judged.records(trial, v.answer_set, t)
                cand = read_jsonl(answers[t], required=("pair", "text"), allow_empty=True)
                base = read_jsonl(answers[0], required=("pair", "text"), allow_empty=True)
                lc = length_control.from_records(recs, cand, base, v.positions, resamples=resamples, seed=seed)
                out.append({"variant": name, "t": t, "trial": trial, **lc})
    if len(judged.by_trial) > 1:
        out += _pooled_length_rows(judged, configured, resamples, seed)
    return out


def _pooled_length_rows(judged: Judged, configured: list[str], resamples: int, seed: int) -> list[dict]:
    """The LC win rate over all k trials (trial "all"): one model on every trial's comparisons, a hierarchical
    bootstrap interval (pairs, then trials; stargate.evaluation.length_control.across_trials)."""
    out = []
    trials = sorted(judged.by_trial)
    for name in configured:
        v = parse_variant(name)
        ts = set.intersection(*(set(judged.by_trial[j]["judge"].get(v.answer_set) or {}) for j in trials))
        for t in sorted(ts):
            cells = []  # per trial: {pair: (outcome, candidate length, baseline length)}
            for j in trials:
                answers = judged.by_trial[j]["answers"].get(v.answer_set) or {}
                if t not in answers or 0 not in answers:
                    break
                cand, base = ({r["pair"]: r["text"] or "" for r in read_jsonl(answers[x], required=("pair", "text"),
                              allow_empty=True)} for x in (t, 0))  # fmt: skip
                cells.append({r["pair"]: (outcome(r, v.positions), len(cand[r["pair"]]), len(base[r["pair"]]))
                              for r in judged.records(j, v.answer_set, t)})  # fmt: skip
            else:
                pairs = sorted(cells[0])
                if any(sorted(c) != pairs for c in cells):
                    continue  # trials of other pairs cannot be pooled cell by cell
                grid = [[[c[p][i] for p in pairs] for c in cells] for i in range(3)]
                lc = length_control.across_trials(np.array(grid[0], dtype=object), np.array(grid[1]),
                                                  np.array(grid[2]), resamples=resamples, seed=seed)  # fmt: skip
                out.append({"variant": name, "t": t, "trial": "all", "positions": v.positions, **lc})
    return out


def lc_trial_rows(length: list[dict]) -> list[dict]:
    """The LC win rates as figures over the trials (beside the raw win rates, so `stargate compare` sets them
    side by side too): the pooled rate and its hierarchical interval (trial "all"), the per-trial rates' spread."""
    out = []
    for pooled in (r for r in length if r["trial"] == "all"):
        per = [r["lc_win_rate"] for r in length if r["variant"] == pooled["variant"] and r["t"] == pooled["t"]
               and r["trial"] != "all"]  # fmt: skip
        valid = [x for x in per if x is not None]
        lo, hi = pooled["ci_low"], pooled["ci_high"]
        out.append({
            "figure": f"lc win rate {pooled['variant']}", "t": pooled["t"], "vs": 0, "k": len(per),
            "n_pairs": pooled["n"] // max(len(per), 1), "n_cells": pooled["n_used"], "mean": pooled["lc_win_rate"],
            "trial_sd": float(np.std(valid, ddof=1)) if len(valid) > 1 else None,
            "trial_min": min(valid) if valid else None, "trial_max": max(valid) if valid else None,
            "ci_low": lo, "ci_high": hi, "floor": (hi - lo) / 2 if lo is not None and hi is not None else None,
            "per_trial_means": per,
        })  # fmt: skip
    return out
