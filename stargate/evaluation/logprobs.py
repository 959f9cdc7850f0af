"""Log-prob tables: per (iteration, condition) mean / SEM, the top-1 rows, the general/specific breakdown,
and the paired differences between iterations with bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..config import SELECTION_CONDITION
from ..errors import StargateError
from ..records import read_jsonl
from .bootstrap import interval


def stats(values) -> dict:
    """Mean, standard error of the mean (the paper's error bars) and count."""
    v = pd.Series(values, dtype=float)
    n = int(v.size)
    return {"mean": float(v.mean()) if n else None, "sem": float(v.sem()) if n > 1 else 0.0, "n": n}


def best_per_pair(df: pd.DataFrame) -> pd.DataFrame:
    """The top-1 conversation of each pair (ties: the lowest conversation index, as topk does)."""
    return df.sort_values(["pair", "logprob", "conv"], ascending=[True, False, True]).drop_duplicates("pair")


def read_frame(path: str, condition: str) -> pd.DataFrame:
    recs = read_jsonl(path, required=("pair", "condition", "logprob"))
    wrong = {r["condition"] for r in recs} - {condition}
    if wrong:
        raise StargateError(f"{path}: holds condition(s) {sorted(wrong)}, the manifest says {condition}")
    df = pd.DataFrame.from_records(recs)
    if "conv" not in df:
        df["conv"] = 0
    return df[["pair", "conv", "logprob"]]


def frames(logprobs: dict[int, dict[str, str]], controls: dict[str, str]) -> dict[tuple[str, int], pd.DataFrame]:
    """Every (condition, t) the summary reports, as a frame of (pair, conv, logprob). Top-1 rows: the
    qa-experimental top-1 conversation of each pair (-top1), pos-control-1 at that conversation
    (-at-top1), the shuffled control's own best (shuffled-top1). Controls are one value per pair, constant
    over t, so their top-1 row is the same values (the paper's pos_control_2_topk, n = pairs)."""
    control = {c: read_frame(p, c) for c, p in controls.items()}
    out: dict[tuple[str, int], pd.DataFrame] = {}
    for t in sorted(logprobs):
        conds = {c: read_frame(p, c) for c, p in logprobs[t].items()}
        for cond, df in conds.items():
            out[(cond, t)] = df
        if SELECTION_CONDITION in conds:
            best = best_per_pair(conds[SELECTION_CONDITION])
            out[(f"{SELECTION_CONDITION}-top1", t)] = best
            if "pos-control-1" in conds:  # the pos-control-1 score of the conversation qa-experimental chose
                at = best[["pair", "conv"]].merge(conds["pos-control-1"], on=["pair", "conv"], how="left")
                if at["logprob"].isna().any():
                    raise StargateError(
                        f"{logprobs[t]['pos-control-1']}: misses conversations scored in qa-experimental"
                    )
                out[("pos-control-1-at-top1", t)] = at
        if "shuffled" in conds:
            out[("shuffled-top1", t)] = best_per_pair(conds["shuffled"])
        for cond, df in control.items():
            out[(cond, t)] = df
            out[(f"{cond}-top1", t)] = df
    return out


def with_breakdown(
    fr: dict[tuple[str, int], pd.DataFrame], label_of_task: dict[str, str] | None, tag: str = ""
) -> dict[tuple[str, int], pd.DataFrame]:
    """qa-experimental (all and top-1) split by task label (spec §6.1: general vs specific), as rows
    `{cond}-{tag}{label}`: tag "" for the hand labels, "rated-" for the judge's specificity ratings."""
    if not label_of_task:
        return fr
    out = dict(fr)
    for (cond, t), df in fr.items():
        if cond not in (SELECTION_CONDITION, f"{SELECTION_CONDITION}-top1"):
            continue
        labels = df["pair"].map(lambda k: label_of_task.get(k.split("|")[0]))
        for label in ("general", "specific"):
            out[(f"{cond}-{tag}{label}", t)] = df[labels == label]
    return out


def rows(fr: dict[tuple[str, int], pd.DataFrame]) -> list[dict]:
    out = [{"t": t, "condition": cond, **stats(df["logprob"])} for (cond, t), df in fr.items()]
    out.sort(key=lambda r: (r["condition"], r["t"]))
    return out


def paired_difference(before: pd.DataFrame, after: pd.DataFrame, resamples: int, seed: int) -> dict:
    """mean(after - before) over matched (pair, conv), its SEM and a bootstrap 95 % interval that
    resamples pairs (all conversations of a drawn pair move together)."""
    m = before.merge(after, on=["pair", "conv"], suffixes=("_before", "_after"))
    d = m["logprob_after"] - m["logprob_before"]
    by_pair = pd.DataFrame({"pair": m["pair"], "d": d}).groupby("pair")["d"].agg(["sum", "count"])
    sums, counts = by_pair["sum"].to_numpy(), by_pair["count"].to_numpy().astype(float)

    def mean_of(idx: np.ndarray) -> np.ndarray:
        return sums[idx].sum(1) / counts[idx].sum(1)

    lo, hi = interval(len(sums), mean_of, resamples, seed)
    s = stats(d)
    return {"difference": s["mean"], "sem": s["sem"], "n": s["n"], "n_pairs": len(sums), "ci_low": lo, "ci_high": hi}


def differences(fr: dict[tuple[str, int], pd.DataFrame], resamples: int, seed: int) -> list[dict]:
    """Every condition that changes with t: m_t vs m0 and m_t vs m_{t-1}, paired by pair and conversation
    (top-1 rows by pair)."""
    out = []
    conditions = sorted({c for c, _ in fr})
    for cond in conditions:
        ts = sorted(t for c, t in fr if c == cond)
        for t in ts[1:]:
            for ref in sorted({0, t - 1}):
                if (cond, ref) not in fr or fr[(cond, ref)] is fr[(cond, t)]:
                    continue  # constant controls: the same frame at every t
                before, after = fr[(cond, ref)], fr[(cond, t)]
                if cond.endswith("top1") or "-top1-" in cond or cond.startswith("pos-control-1-at"):
                    before, after = before.assign(conv=0), after.assign(conv=0)  # paired by pair
                out.append({"condition": cond, "t": t, "vs": ref, **paired_difference(before, after, resamples, seed)})
    return out
