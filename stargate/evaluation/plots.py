"""The summary's figures (PNG): log-prob curves with the paper's overlaid, win-rate bars with 95 % intervals
for every variant (the paper's values marked), and judge position bias."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .outcomes import TOO_FEW_DECIDED, headline

MAIN_CONDITIONS = (
    "qa-experimental",
    "qa-experimental-top1",
    "pos-control-1",
    "pos-control-2",
    "neg-control",
    "shuffled",
)


def plot_all(
    out: Path,
    rows: list[dict],
    wins: list[dict],
    bias: list[dict],
    iterations: list[int],
    paper: dict,
    extra: dict[int, str] | None = None,
    run_label: str = "",
):
    """`extra`: extra questioners by iteration number, drawn as points after the m_t curve. `run_label` names
    the config that made the run, printed at the foot of every figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for name, draw in (
        (
            "logprobs.png",
            lambda path: _logprobs(plt, path, rows, iterations, paper["logprobs"], extra or {}, run_label),
        ),
        ("winrates.png", lambda path: _winrates(plt, path, wins, paper["winrates"], extra or {}, run_label)),
        ("position_bias.png", lambda path: _bias(plt, path, bias, extra or {}, run_label)),
    ):
        draw(out / name)


def _save(fig, path, run_label: str) -> None:
    if run_label:
        fig.text(0.005, 0.005, run_label, fontsize=6, color="grey", ha="left", va="bottom")
    fig.tight_layout(rect=(0, 0.03 if run_label else 0, 1, 1))
    fig.savefig(path, dpi=120)


def _logprobs(plt, path, rows, iterations, paper_lp, extra, run_label=""):
    fig, ax = plt.subplots(figsize=(8, 5))
    conds = [c for c in MAIN_CONDITIONS if any(r["condition"] == c for r in rows)]
    ours = [r["mean"] for r in rows if r["condition"] in conds and r["mean"] is not None]
    theirs = [v for c in conds if c in paper_lp for v in paper_lp[c]["mean"]]
    # The paper's 7B numbers sit on another scale than a small model's: then they get their own axis.
    overlap = ours and theirs and min(theirs) <= max(ours) and min(ours) <= max(theirs)
    pax = ax if overlap or not ours else ax.twinx()
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    ts = sorted(set(iterations) - set(extra) | {t for c in conds if c in paper_lp for t in paper_lp[c]["t"]})
    last = max(ts) if ts else 0
    for i, cond in enumerate(conds):
        color = colors[i % len(colors)]
        sel = sorted((r for r in rows if r["condition"] == cond and r["mean"] is not None), key=lambda r: r["t"])
        for k, t in enumerate(sorted(extra)):  # extra questioners: points after the iterations
            r = next((r for r in sel if r["t"] == t), None)
            if r is not None:
                ax.errorbar(last + 1 + k, r["mean"], yerr=r["sem"], marker="*", capsize=3, color=color)
        sel = [r for r in sel if r["t"] not in extra]
        ax.errorbar(
            [r["t"] for r in sel],
            [r["mean"] for r in sel],
            yerr=[r["sem"] for r in sel],
            marker="o",
            capsize=3,
            color=color,
            label=f"{cond} (this run)",
        )
        if cond in paper_lp:
            p = paper_lp[cond]
            pax.errorbar(
                p["t"],
                p["mean"],
                yerr=p["sem"],
                marker="s",
                capsize=2,
                linestyle=":",
                color=color,
                alpha=0.6,
                label=f"{cond} (paper)",
            )
    xs = ts + [last + 1 + k for k in range(len(extra))]
    ax.set_xticks(xs, [f"m{t}" for t in ts] + [extra[t] for t in sorted(extra)], fontsize=8)
    ax.set_ylabel("log p(gold) under m0, this run (solid)")
    if pax is not ax:
        pax.set_ylabel("paper (dotted, right axis)")
    ax.set_title("Test-split log p(gold), mean ± SEM; the paper's dotted")
    axes = dict.fromkeys((ax, pax))  # in this order (a set's order changed between runs: not reproducible)
    handles = [h for a in axes for h in a.get_legend_handles_labels()[0]]
    labels = [lb for a in axes for lb in a.get_legend_handles_labels()[1]]
    ax.legend(handles, labels, fontsize=6, loc="lower right", ncol=2)
    _save(fig, path, run_label)
    plt.close(fig)


def _rate(w: dict | None) -> tuple[float, float, float, str]:
    """The bar of a variant: the headline rate (outcomes.headline: the win rate, or ties-as-half where ties
    or invalid verdicts dominate or both orders were judged), its interval, and the counts behind it."""
    if w is None:
        return np.nan, 0.0, 0.0, ""
    h = headline(w)
    rate = h["rate"] if h["rate"] is not None else np.nan
    lo = rate - h["ci_low"] if h["ci_low"] is not None else 0.0
    hi = h["ci_high"] - rate if h["ci_high"] is not None else 0.0
    kind = " (ties = ½)" if h["rate_kind"] == "ties_half" else ""
    few = ", too few" if h["decided"] < TOO_FEW_DECIDED else ""
    return rate, lo, hi, f"{w['wins']}W {w['losses']}L {w['ties']}T: {h['decided']}/{h['n']} decided{few}{kind}"


def _winrates(plt, path, wins, paper_wr, extra, run_label=""):
    overall = [w for w in wins if w["group"] == "overall"]
    variants = sorted({w["variant"] for w in overall}, reverse=True)
    ts = sorted({w["t"] for w in overall})
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.45 * max(len(variants), 1) * max(len(ts), 1) ** 0.5))
    height = 0.8 / max(len(ts), 1)
    y = np.arange(len(variants))
    for j, t in enumerate(ts):
        bars = [_rate(next((w for w in overall if w["variant"] == v and w["t"] == t), None)) for v in variants]
        ax.barh(
            y + j * height, [b[0] for b in bars], height, xerr=[[b[1] for b in bars], [b[2] for b in bars]],
            capsize=2, label=f"{extra.get(t, f'm{t}')} vs m0",
        )  # fmt: skip
        for i, b in enumerate(bars):  # the counts the bar rests on, at its foot
            if b[3]:
                ax.text(0.01, y[i] + j * height, b[3], fontsize=6, va="center", ha="left")
        for i, v in enumerate(variants):
            p = paper_wr.get(v)
            if p and t in p["t"]:
                ax.plot(p["win_rate"][p["t"].index(t)], y[i] + j * height, "kd", markersize=5)
    ax.plot([], [], "kd", label="paper")
    ax.axvline(0.5, color="grey", linestyle=":")
    labels = list(variants)
    ax.set_yticks(y + height * (len(ts) - 1) / 2, labels, fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_xlabel("win rate vs m0, 95 % CI (ties dropped, or ½ each where ties dominate)", fontsize=9)
    ax.set_title("Judge win rates by variant (conversation-answerer-positions)")
    ax.legend(fontsize=7, loc="lower right")
    _save(fig, path, run_label)
    plt.close(fig)


def _bias(plt, path, bias, extra, run_label=""):
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(bias) + 2), 4))
    labels = [
        f"{b['answer_set']}\n{extra.get(b['t'], 'm' + str(b['t']))}\n"
        f"decided A {b.get('n_decided_first', '?')}, B {b.get('n_decided_second', '?')} of {b['n']}"
        for b in bias
    ]
    x = np.arange(len(bias))
    first = [b["win_rate_mt_first"] if b["win_rate_mt_first"] is not None else np.nan for b in bias]
    second = [b["win_rate_mt_second"] if b["win_rate_mt_second"] is not None else np.nan for b in bias]
    # a rate over fewer decided verdicts than TOO_FEW_DECIDED is drawn faint and says so: 3 of 48 decided
    # read as a full bar otherwise
    few = [min(b.get("n_decided_first", 0), b.get("n_decided_second", 0)) < TOO_FEW_DECIDED for b in bias]
    for shift, rates, name in ((-0.2, first, "m_t shown first (A)"), (0.2, second, "m_t shown second (B)")):
        bars = ax.bar(x + shift, rates, 0.4, label=name)
        for bar, faint in zip(bars, few, strict=True):
            bar.set_alpha(0.3 if faint else 1.0)
    for i, faint in enumerate(few):
        if faint:
            ax.text(x[i], 0.5, "too few\ndecided", ha="center", va="center", fontsize=8)
    ax.axhline(0.5, color="grey", linestyle=":")
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("win rate vs m0")
    ax.set_title("Judge position bias" if bias else "Judge position bias (both orders not judged)")
    ax.legend(fontsize=7)
    _save(fig, path, run_label)
    plt.close(fig)
