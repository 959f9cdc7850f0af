"""Evaluation summary: log-prob curves over m0..mT with controls, win rates vs m0, as CSV, JSON and PNG."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from ..config import SELECTION_CONDITION
from ..errors import StargateError
from ..log import get_logger
from ..records import atomic_write_text, read_jsonl, read_meta, write_json

log = get_logger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--manifest",
        required=True,
        help='JSON: {"logprobs": {T: {condition: PATH}}, "controls": {condition: PATH}, '
        '"judge": {T: PATH}, "conversations": {T: PATH}} (written by rules/evaluate.smk)',
    )
    p.add_argument("--out-dir", required=True)


def stats(values) -> dict:
    """Mean, standard error of the mean (the paper's error bars) and count."""
    v = pd.Series(values, dtype=float)
    n = int(v.size)
    return {"mean": float(v.mean()), "sem": float(v.sem()) if n > 1 else 0.0, "n": n}


def _best_per_pair(df: pd.DataFrame) -> pd.DataFrame:
    """The top-1 conversation of each pair (ties: the lowest conversation index, as topk does)."""
    return df.sort_values(["pair", "logprob", "conv"], ascending=[True, False, True]).drop_duplicates("pair")


def _frame(path: str, condition: str) -> pd.DataFrame:
    recs = read_jsonl(path, required=("pair", "condition", "logprob"))
    wrong = {r["condition"] for r in recs} - {condition}
    if wrong:
        raise StargateError(f"{path}: holds condition(s) {sorted(wrong)}, the manifest says {condition}")
    return pd.DataFrame.from_records(recs)


def logprob_rows(logprobs: dict[int, dict[str, str]], controls: dict[str, str]) -> list[dict]:
    """One row per (iteration, condition), with the top-1 rows the paper plots."""
    control_stats = {c: stats(_frame(p, c)["logprob"]) for c, p in controls.items()}
    rows = []
    for t in sorted(logprobs):
        conds = {c: _frame(p, c) for c, p in logprobs[t].items()}
        for cond, df in conds.items():
            rows.append({"t": t, "condition": cond, **stats(df["logprob"])})
        if SELECTION_CONDITION in conds:
            best = _best_per_pair(conds[SELECTION_CONDITION])
            rows.append({"t": t, "condition": f"{SELECTION_CONDITION}-top1", **stats(best["logprob"])})
            if "pos-control-1" in conds:  # the pos-control-1 score of the conversation qa-experimental chose
                at = best[["pair", "conv"]].merge(conds["pos-control-1"], on=["pair", "conv"], how="left")
                if at["logprob"].isna().any():
                    raise StargateError(
                        f"{logprobs[t]['pos-control-1']}: misses conversations scored in qa-experimental"
                    )
                rows.append({"t": t, "condition": "pos-control-1-at-top1", **stats(at["logprob"])})
        if "shuffled" in conds:
            rows.append({"t": t, "condition": "shuffled-top1", **stats(_best_per_pair(conds["shuffled"])["logprob"])})
        for cond, s in control_stats.items():  # constant over t: no conversation involved
            rows.append({"t": t, "condition": cond, **s})
    rows.sort(key=lambda r: (r["condition"], r["t"]))
    return rows


def winrate_rows(judge: dict[int, str]) -> list[dict]:
    """Wins, losses and invalid verdicts (ties, unparsable: dropped from the rate, spec §6.2) per group."""
    out = []
    for t in sorted(judge):
        df = pd.DataFrame.from_records(read_jsonl(judge[t], required=("pair", "group", "winner")))
        for group in sorted(df["group"].unique().tolist(), key=str) + ["overall"]:
            sel = df if group == "overall" else df[df["group"] == group]
            wins, losses = int((sel["winner"] == "candidate").sum()), int((sel["winner"] == "baseline").sum())
            valid = wins + losses
            out.append(
                {
                    "t": t,
                    "group": group,
                    "wins": wins,
                    "losses": losses,
                    "invalid": int(len(sel)) - valid,
                    "win_rate": wins / valid if valid else None,
                }
            )
    return out


def _manifest(text: str) -> dict:
    try:
        m = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StargateError(f"--manifest is not valid JSON: {exc}") from None
    if not isinstance(m, dict):
        raise StargateError("--manifest must be a JSON object")
    missing = {"logprobs", "controls", "judge", "conversations"} - set(m)
    if missing:
        raise StargateError(f"--manifest: missing key(s) {sorted(missing)}")
    return {
        "logprobs": {int(t): by_c for t, by_c in m["logprobs"].items()},
        "controls": dict(m["controls"]),
        "judge": {int(t): p for t, p in m["judge"].items()},
        "conversations": {int(t): p for t, p in m["conversations"].items()},
    }


def run(args: argparse.Namespace) -> None:
    out = Path(args.out_dir)
    m = _manifest(args.manifest)
    rows = logprob_rows(m["logprobs"], m["controls"])
    wins = winrate_rows(m["judge"])
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(out / "logprobs.csv", rows, ["condition", "t", "mean", "sem", "n"])
    _write_csv(out / "winrates.csv", wins, ["t", "group", "wins", "losses", "invalid", "win_rate"])
    empties = {}
    for t, path in sorted(m["conversations"].items()):
        meta = read_meta(path)
        empties[f"m{t}"] = {
            "n_empty_generations": meta.get("n_empty", 0),
            "n_empty_turns": meta.get("n_empty_turns", 0),
        }
    # verdicts refused by a content filter or unparsable: out of the win rate, counted (spec §6.2)
    judge_dropped = {
        f"m{t}": {k: read_meta(p).get(k, 0) for k in ("n_refused", "n_unusable", "n_dropped")}
        for t, p in sorted(m["judge"].items())
    }
    write_json(
        out / "summary.json",
        {"logprobs": rows, "winrates": wins, "judge_dropped": judge_dropped, "empty_generations": empties},
    )
    _plot(out, rows, wins, sorted(m["logprobs"]))
    log.info("summary: %d log-prob rows, %d win-rate rows", len(rows), len(wins))


def _write_csv(path: Path, rows: list[dict], fields: list[str]) -> None:
    atomic_write_text(path, pd.DataFrame.from_records(rows, columns=fields).to_csv(index=False))


def _plot(out: Path, rows: list[dict], wins: list[dict], iterations: list[int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for cond in sorted({r["condition"] for r in rows}):
        sel = sorted((r for r in rows if r["condition"] == cond), key=lambda r: r["t"])
        ax.errorbar(
            [r["t"] for r in sel],
            [r["mean"] for r in sel],
            yerr=[r["sem"] for r in sel],
            marker="o",
            capsize=3,
            label=cond,
            linestyle="--" if "control" in cond else "-",
        )
    ax.set_xticks(iterations, [f"m{t}" for t in iterations])
    ax.set_ylabel("log p(gold response) under m0 (sum)")
    ax.set_title("Test-split log-probabilities")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(out / "logprobs.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 4))
    overall = sorted((w for w in wins if w["group"] == "overall"), key=lambda w: w["t"])
    ax.bar([f"m{w['t']}" for w in overall], [w["win_rate"] or 0.0 for w in overall], color="tab:blue")
    ax.axhline(0.5, color="grey", linestyle=":")
    ax.set_ylim(0, 1)
    ax.set_ylabel("win rate vs m0 (ties dropped)")
    ax.set_title("Judge win rates")
    fig.tight_layout()
    fig.savefig(out / "winrates.png", dpi=120)
    plt.close(fig)
