"""The paper's published values and task labels (package data stargate/data/paper/, sources inside), and the
table that sets a run's values beside them."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data" / "paper"
SOURCE_REPO = "scandukuri/assistant-gate@31e8d5d2 experiments/star-gate/"


@cache
def results() -> dict:
    return json.loads((DATA / "paper_results.json").read_text(encoding="utf-8"))


@cache
def general_task_indices() -> frozenset[int]:
    return frozenset(json.loads((DATA / "task_labels.json").read_text(encoding="utf-8"))["general"])


def labels_task_count() -> int:
    return int(json.loads((DATA / "task_labels.json").read_text(encoding="utf-8"))["n_tasks"])


def task_label(task_id: str) -> str:
    """'general' or 'specific' for a test task id `test-tNNNN` (its index NNNN in the split)."""
    index = int(task_id.rsplit("-t", 1)[1])
    return "general" if index in general_task_indices() else "specific"


def comparison(logprob_rows: list[dict], winrate_rows: list[dict], run: dict) -> list[dict]:
    """For every metric the paper reports that this run measured: ours, the paper's, ours - paper's, the
    paper's source file and the config that produced ours. Ours at iterations the paper has (m0..m3)."""
    paper = results()
    out = []
    ours_lp = {(r["condition"], r["t"]): r for r in logprob_rows}
    for cond, spec in paper["logprobs"].items():
        for t, mean, sem in zip(spec["t"], spec["mean"], spec["sem"], strict=True):
            r = ours_lp.get((cond, t))
            if r is not None:
                out.append(
                    _row("log p(gold) mean", cond, t, r["mean"], mean, spec["source"][0], run, r.get("sem"), sem)
                )
    ours_wr = {(r["variant"], r["t"]): r for r in winrate_rows if r["group"] == "overall"}
    for variant, spec in paper["winrates"].items():
        for t, rate in zip(spec["t"], spec["win_rate"], strict=True):
            r = ours_wr.get((variant, t))
            if r is not None:
                row = _row("win rate vs m0", variant, t, r["win_rate"], rate, spec["source"][0], run)
                row.update(ours_ci_low=r["ci_low"], ours_ci_high=r["ci_high"])
                out.append(row)
    return out


def _row(metric, name, t, ours, theirs, source, run, ours_sem=None, paper_sem=None) -> dict:
    return {
        "metric": metric,
        "name": name,
        "t": t,
        "ours": ours,
        "paper": theirs,
        "difference": ours - theirs if ours is not None else None,
        "ours_sem": ours_sem,
        "paper_sem": paper_sem,
        "ours_ci_low": None,
        "ours_ci_high": None,
        "paper_source": SOURCE_REPO + source,
        "config": run.get("run_name"),
        "config_sha256": run.get("config_sha256"),
    }
