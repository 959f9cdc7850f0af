"""Evaluation summary: log-prob curves over m0..mT with controls, win rates vs m0, as CSV, JSON and PNG."""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

from ..errors import StargateError
from ..log import get_logger
from ..records import read_jsonl, read_meta, write_json

log = get_logger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--logprobs", nargs="+", required=True, help="T=PATH: a per-iteration test log-prob file")
    p.add_argument("--controls", nargs="+", required=True, help="PATH: neg-control / pos-control-2 files")
    p.add_argument("--judge", nargs="*", default=[], help="T=PATH: judge verdicts of m_T vs m0")
    p.add_argument("--conversations", nargs="*", default=[], help="T=PATH: pooled test conversations")
    p.add_argument("--out-dir", required=True)


def _tagged(items: list[str]) -> list[tuple[int, str]]:
    out = []
    for item in items:
        t, sep, path = item.partition("=")
        if not sep or not t.isdigit():
            raise StargateError(f"expected T=PATH, got {item!r}")
        out.append((int(t), path))
    return out


def stats(values: list[float]) -> dict:
    n = len(values)
    mean = sum(values) / n
    sem = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) / math.sqrt(n) if n > 1 else 0.0
    return {"mean": mean, "sem": sem, "n": n}


def _best_per_pair(recs: list[dict]) -> dict[str, dict]:
    best: dict[str, dict] = {}
    for r in recs:
        cur = best.get(r["pair"])
        if cur is None or (r["logprob"], -r["conv"]) > (cur["logprob"], -cur["conv"]):
            best[r["pair"]] = r
    return best


def run(args: argparse.Namespace) -> None:
    out = Path(args.out_dir)
    rows = []  # (t, condition, mean, sem, n)
    per_t: dict[int, dict[str, list[dict]]] = {}
    for t, path in _tagged(args.logprobs):
        recs = read_jsonl(path, required=("pair", "condition", "logprob"))
        per_t.setdefault(t, {})[recs[0]["condition"]] = recs
    iterations = sorted(per_t)
    controls = {}
    for path in args.controls:
        recs = read_jsonl(path, required=("pair", "condition", "logprob"))
        controls[recs[0]["condition"]] = stats([r["logprob"] for r in recs])
    for t in iterations:
        conds = per_t[t]
        for cond, recs in conds.items():
            rows.append({"t": t, "condition": cond, **stats([r["logprob"] for r in recs])})
        if "qa-experimental" in conds:
            best = _best_per_pair(conds["qa-experimental"])
            rows.append({"t": t, "condition": "qa-experimental-top1", **stats([r["logprob"] for r in best.values()])})
            if "pos-control-1" in conds:
                pc1 = {(r["pair"], r["conv"]): r["logprob"] for r in conds["pos-control-1"]}
                vals = [pc1[(k, b["conv"])] for k, b in best.items()]
                rows.append({"t": t, "condition": "pos-control-1-at-top1", **stats(vals)})
        if "shuffled" in conds:
            rows.append({"t": t, "condition": "shuffled-top1",
                         **stats([r["logprob"] for r in _best_per_pair(conds["shuffled"]).values()])})
        for cond, s in controls.items():  # constant over t: no conversation involved
            rows.append({"t": t, "condition": cond, **s})
    rows.sort(key=lambda r: (r["condition"], r["t"]))
    _write_csv(out / "logprobs.csv", rows, ["condition", "t", "mean", "sem", "n"])

    wins, judge_dropped = [], {}
    for t, path in _tagged(args.judge):
        recs = read_jsonl(path, required=("pair", "group", "winner"))
        # verdicts refused by a content filter or unparsable: out of the win rate, counted (spec §6.2)
        meta = read_meta(path)
        judge_dropped[f"m{t}"] = {k: meta.get(k, 0) for k in ("n_refused", "n_unusable", "n_dropped")}
        for group in sorted({r["group"] for r in recs}) + ["overall"]:
            sel = [r for r in recs if group == "overall" or r["group"] == group]
            w = sum(r["winner"] == "candidate" for r in sel)
            lost = sum(r["winner"] == "baseline" for r in sel)
            valid = w + lost
            wins.append({"t": t, "group": group, "wins": w, "losses": lost, "invalid": len(sel) - valid,
                         "win_rate": w / valid if valid else None})
    _write_csv(out / "winrates.csv", wins, ["t", "group", "wins", "losses", "invalid", "win_rate"])

    empties = {}
    for t, path in _tagged(args.conversations):
        meta = read_meta(path)
        empties[f"m{t}"] = {"n_empty_generations": meta.get("n_empty", 0), "n_empty_turns": meta.get("n_empty_turns", 0)}
    write_json(out / "summary.json", {"logprobs": rows, "winrates": wins, "judge_dropped": judge_dropped,
                                      "empty_generations": empties})
    _plot(out, rows, wins, iterations)
    log.info("summary: %d log-prob rows, %d win-rate rows", len(rows), len(wins))


def _write_csv(path: Path, rows: list[dict], fields: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)


def _plot(out: Path, rows: list[dict], wins: list[dict], iterations: list[int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for cond in sorted({r["condition"] for r in rows}):
        sel = sorted((r for r in rows if r["condition"] == cond), key=lambda r: r["t"])
        ax.errorbar([r["t"] for r in sel], [r["mean"] for r in sel], yerr=[r["sem"] for r in sel], marker="o",
                    capsize=3, label=cond, linestyle="--" if "control" in cond else "-")
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
