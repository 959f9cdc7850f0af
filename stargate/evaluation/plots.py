"""The summary's figures (PNG): log-prob curves (a panel per condition, the differences to m0 with their
intervals, the paper's curves on a panel of their own), win-rate bars with 95 % intervals for every variant
(the paper's values marked), and judge position bias."""

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
    diffs: list[dict] | None = None,
):
    """`extra`: extra questioners by iteration number, drawn as points after the m_t curve. `run_label` names
    the config that made the run, printed at the foot of every figure. `diffs`: the paired differences to
    m0 (their own panel of the log-prob figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for name, draw in (
        (
            "logprobs.png",
            lambda path: _logprobs(plt, path, rows, iterations, paper["logprobs"], extra or {}, run_label, diffs),
        ),
        ("winrates.png", lambda path: _winrates(plt, path, wins, paper["winrates"], extra or {}, run_label)),
        ("position_bias.png", lambda path: _bias(plt, path, bias, extra or {}, run_label)),
    ):
        draw(out / name)


def _save(fig, path, run_label: str, top: float = 1.0) -> None:
    if run_label:
        fig.text(0.005, 0.005, run_label, fontsize=6, color="grey", ha="left", va="bottom")
    fig.tight_layout(rect=(0, 0.03 if run_label else 0, 1, top))
    fig.savefig(path, dpi=120)


def _logprobs(plt, path, rows, iterations, paper_lp, extra, run_label="", diffs=None):
    """A panel per condition (each on its own scale, so curves that sit close stay apart), the differences to
    m0 with their 95 % intervals on one panel, the paper's curves on their own panel, the legend above."""
    conds = [c for c in MAIN_CONDITIONS if any(r["condition"] == c and r["mean"] is not None for r in rows)]
    theirs = [c for c in conds if c in paper_lp]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    color = {c: colors[i % len(colors)] for i, c in enumerate(conds)}
    ts = sorted(set(iterations) - set(extra))
    last = max(ts) if ts else 0
    xs = ts + [last + 1 + k for k in range(len(extra))]
    ticks = [f"m{t}" for t in ts] + [extra[t] for t in sorted(extra)]
    n_panels = len(conds) + 1 + bool(theirs)
    ncols = min(3, n_panels)
    nrows = -(-n_panels // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 2.9 * nrows + 0.9), squeeze=False)
    panels = list(axes.flat)
    for ax, cond in zip(panels, conds, strict=False):
        sel = sorted((r for r in rows if r["condition"] == cond and r["mean"] is not None), key=lambda r: r["t"])
        own = [r for r in sel if r["t"] not in extra]
        ax.errorbar(
            [r["t"] for r in own], [r["mean"] for r in own], yerr=[r["sem"] for r in own],
            marker="o", capsize=3, color=color[cond], label=cond,
        )  # fmt: skip
        for k, t in enumerate(sorted(extra)):  # extra questioners: points after the iterations
            r = next((r for r in sel if r["t"] == t), None)
            if r is not None:
                ax.errorbar(last + 1 + k, r["mean"], yerr=r["sem"], marker="*", capsize=3, color=color[cond])
        ax.set_title(cond, fontsize=9)
        ax.set_xticks(xs, ticks, fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
        ax.set_ylabel("log p(gold), mean ± SEM", fontsize=7)
    dax = panels[len(conds)]
    width = 0.6 / max(len(conds), 1)
    for i, cond in enumerate(conds):
        d = sorted(
            (r for r in diffs or [] if r["condition"] == cond and r.get("vs") == 0 and r["difference"] is not None),
            key=lambda r: r["t"],
        )
        pos = {t: x for t, x in zip(ts + sorted(extra), xs, strict=False)}
        d = [r for r in d if r["t"] in pos]
        if not d:
            continue
        x = [pos[r["t"]] - 0.3 + width * (i + 0.5) for r in d]
        lo = [max(0.0, r["difference"] - (r["ci_low"] if r["ci_low"] is not None else r["difference"])) for r in d]
        hi = [max(0.0, (r["ci_high"] if r["ci_high"] is not None else r["difference"]) - r["difference"]) for r in d]
        dax.errorbar(x, [r["difference"] for r in d], yerr=[lo, hi], fmt="o", capsize=2, color=color[cond])
    dax.axhline(0, color="grey", linestyle=":")
    dax.set_xticks(xs, ticks, fontsize=7)
    dax.tick_params(axis="y", labelsize=7)
    dax.set_title("m_t − m0, paired, 95 % bootstrap interval", fontsize=9)
    used = len(conds) + 1
    if theirs:
        pax = panels[used]
        for cond in theirs:
            p = paper_lp[cond]
            pax.errorbar(
                p["t"], p["mean"], yerr=p["sem"], marker="s", capsize=2, linestyle=":", color=color[cond], alpha=0.8
            )
        pax.set_xticks(sorted({t for c in theirs for t in paper_lp[c]["t"]}))
        pax.set_xticklabels([f"m{t}" for t in sorted({t for c in theirs for t in paper_lp[c]["t"]})], fontsize=7)
        pax.tick_params(axis="y", labelsize=7)
        pax.set_title("the paper (Mistral-7B), mean ± SEM", fontsize=9)
        used += 1
    for ax in panels[used:]:
        ax.axis("off")
    height = 2.9 * nrows + 0.9
    fig.suptitle(
        "Test-split log p(gold) under m0: this run by condition, its differences to m0, the paper", y=1 - 0.08 / height
    )
    handles = [plt.Line2D([], [], color=color[c], marker="o", label=c) for c in conds]
    fig.legend(
        handles=handles, loc="upper center", bbox_to_anchor=(0.5, 1 - 0.38 / height),
        ncol=min(len(conds), 6) or 1, fontsize=7, frameon=False,
    )  # fmt: skip
    _save(fig, path, run_label, top=1 - 0.6 / height)
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
