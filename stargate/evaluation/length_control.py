"""Length-controlled win rate (AlpacaEval 2.0's LC win rate, Dubois et al. 2024), from cached verdicts and
answer texts only: no model is called.

Per comparison i: y_i = 1 (m_t wins), 0 (loses), 0.5 (tie, with ties="half": half a win and half a loss in
the likelihood) or left out (ties="drop"); unparsable and refused verdicts are always left out. The length
feature is z_i = tanh((ℓ_t,i - ℓ_0,i) / s), ℓ the answer length (characters unless a `length` callable is
given), s the standard deviation of the length differences (1 when they are all equal), as AlpacaEval.
The model is a logistic regression

    P(m_t wins | z) = σ(β_0 + β_1 z),   σ(u) = 1 / (1 + e^-u),

fit by Newton's method (IRLS) on the log-likelihood Σ_i [y_i log p_i + (1 - y_i) log(1 - p_i)] with a tiny
ridge λ/2 (β_0² + β_1²), λ = 1e-3, so that separable data (a judge that always picks the longer answer)
still gives finite coefficients. The LC win rate is the model's win probability at equal lengths (z = 0)
averaged over the comparisons: with no other feature, σ(β_0). Its 95 % interval is the percentile bootstrap
over comparisons (the model refit on every draw; s kept from the full data). The raw rate beside it uses the
same tie rule: mean of y.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from ..errors import StargateError
from .bootstrap import interval
from .outcomes import outcome

TIES = ("half", "drop")
RIDGE = 1e-3
ITERATIONS = 100
MAX_STEP = 4.0


def fit(z: np.ndarray, y: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
    """(β_0, β_1) per row of (draws, n) matrices z, y: batched Newton steps on the ridge log-likelihood; `weight`
    (same shape) counts each comparison that many times (0: left out)."""
    z, y = np.atleast_2d(z), np.atleast_2d(y)
    c = np.ones_like(z) if weight is None else np.atleast_2d(weight).astype(float)
    beta = np.zeros((z.shape[0], 2))
    for _ in range(ITERATIONS):
        p = 1 / (1 + np.exp(-(beta[:, :1] + beta[:, 1:] * z)))
        r, w = c * (y - p), c * p * (1 - p)
        g0, g1 = r.sum(1) - RIDGE * beta[:, 0], (r * z).sum(1) - RIDGE * beta[:, 1]
        h00, h01, h11 = w.sum(1) + RIDGE, (w * z).sum(1), (w * z * z).sum(1) + RIDGE
        det = h00 * h11 - h01 * h01
        step = np.stack([(h11 * g0 - h01 * g1) / det, (h00 * g1 - h01 * g0) / det], axis=1)
        step = np.clip(step, -MAX_STEP, MAX_STEP)  # damped: separable data would overshoot
        beta += step
        if np.abs(step).max() < 1e-10:
            break
    return beta


def lc_win_rate(
    outcomes: Sequence[str],
    len_candidate: Sequence[float],
    len_baseline: Sequence[float],
    ties: str = "half",
    resamples: int = 2000,
    seed: int = 1,
) -> dict:
    """Raw and length-controlled win rate of m_t, the LC interval and the fitted model (see the module doc)."""
    if ties not in TIES:
        raise StargateError(f"length control: ties '{ties}', choose one of {', '.join(TIES)}")
    if not len(outcomes) == len(len_candidate) == len(len_baseline):
        raise StargateError("length control: outcomes and both answers' lengths must be given per comparison")
    value = {"win": 1.0, "loss": 0.0, **({"tie": 0.5} if ties == "half" else {})}
    keep = [i for i, o in enumerate(outcomes) if o in value]
    y = np.array([value[outcomes[i]] for i in keep])
    diff = np.array([float(len_candidate[i]) - float(len_baseline[i]) for i in keep])
    out = {"n": len(outcomes), "n_used": len(keep), "ties": ties, "raw_win_rate": None, "lc_win_rate": None}
    out.update(ci_low=None, ci_high=None, intercept=None, slope=None, length_scale=None, mean_length_difference=None)
    if not keep:
        return out
    scale = float(diff.std(ddof=1)) if len(diff) > 1 and diff.std() > 0 else 1.0
    z = np.tanh(diff / scale)
    beta = fit(z, y)[0]
    lo, hi = interval(len(keep), lambda idx: 1 / (1 + np.exp(-fit(z[idx], y[idx])[:, 0])), resamples, seed)
    out.update(
        raw_win_rate=float(y.mean()),
        lc_win_rate=float(1 / (1 + np.exp(-beta[0]))),
        ci_low=lo,
        ci_high=hi,
        intercept=float(beta[0]),
        slope=float(beta[1]),
        length_scale=scale,
        mean_length_difference=float(diff.mean()),
    )
    return out


def across_trials(
    outcomes: np.ndarray,
    len_candidate: np.ndarray,
    len_baseline: np.ndarray,
    ties: str = "half",
    resamples: int = 2000,
    seed: int = 1,
) -> dict:
    """The LC win rate pooled over k repeated trials: (k, n) matrices of outcomes and lengths (trial j, pair p;
    the same pairs in every trial). The model is fit on every valid cell; the 95 % interval is the
    hierarchical bootstrap of stargate.evaluation.trials (n pairs drawn with replacement, then k of each drawn
    pair's trials), the model refit on every draw with the drawn cells as weights."""
    if ties not in TIES:
        raise StargateError(f"length control: ties '{ties}', choose one of {', '.join(TIES)}")
    o = np.asarray(outcomes, dtype=object)
    if o.ndim != 2 or np.shape(len_candidate) != o.shape or np.shape(len_baseline) != o.shape:
        raise StargateError("length control across trials: give (trials, pairs) matrices of one shape")
    value = {"win": 1.0, "loss": 0.0, **({"tie": 0.5} if ties == "half" else {})}
    valid = np.vectorize(lambda v: v in value, otypes=[bool])(o)
    y = np.vectorize(lambda v: value.get(v, 0.0), otypes=[float])(o)
    diff = np.asarray(len_candidate, dtype=float) - np.asarray(len_baseline, dtype=float)
    k, n = o.shape
    out = {"n": int(o.size), "n_used": int(valid.sum()), "ties": ties, "raw_win_rate": None,
           "lc_win_rate": None, "ci_low": None, "ci_high": None, "intercept": None, "slope": None,
           "length_scale": None, "mean_length_difference": None}  # fmt: skip
    if not valid.any():
        return out
    d = diff[valid]
    scale = float(d.std(ddof=1)) if d.size > 1 and d.std() > 0 else 1.0
    z = np.tanh(diff / scale)
    beta = fit(z.ravel(), y.ravel(), valid.ravel())[0]
    rng = np.random.default_rng(seed)
    rates = []
    for start in range(0, resamples, 500):  # draws in chunks: (chunk, n * k) cells each
        m = min(500, resamples - start)
        pairs = rng.integers(0, n, size=(m, n))
        trials = rng.integers(0, k, size=(m, n, k))
        cells = (trials, pairs[:, :, None])
        b = fit(z[cells].reshape(m, -1), y[cells].reshape(m, -1), valid[cells].reshape(m, -1))
        rates.append(1 / (1 + np.exp(-b[:, 0])))
    lo, hi = np.quantile(np.concatenate(rates), [0.025, 0.975]) if rates else (None, None)
    out.update(
        raw_win_rate=float(y[valid].mean()),
        lc_win_rate=float(1 / (1 + np.exp(-beta[0]))),
        ci_low=None if lo is None else float(lo),
        ci_high=None if hi is None else float(hi),
        intercept=float(beta[0]),
        slope=float(beta[1]),
        length_scale=scale,
        mean_length_difference=float(d.mean()),
    )
    return out


def from_records(
    judge_records: Sequence[dict],
    candidate: Sequence[dict],
    baseline: Sequence[dict],
    positions: str,
    ties: str = "half",
    resamples: int = 2000,
    seed: int = 1,
    length: Callable[[str], float] = len,
) -> dict:
    """`lc_win_rate` of one judge file read under a position protocol (see outcomes.outcome), with the
    answers' texts from the candidate (m_t) and baseline (m0) answer files' records (pair, text)."""
    texts: list[Mapping[str, str]] = [{r["pair"]: r["text"] or "" for r in f} for f in (candidate, baseline)]
    missing = [r["pair"] for r in judge_records if r["pair"] not in texts[0] or r["pair"] not in texts[1]]
    if missing:
        raise StargateError(f"length control: no answer text for judged pair(s) {missing[:3]}")
    outs = [outcome(r, positions) for r in judge_records]
    lc = [length(texts[0][r["pair"]]) for r in judge_records]
    lb = [length(texts[1][r["pair"]]) for r in judge_records]
    return {"positions": positions, **lc_win_rate(outs, lc, lb, ties, resamples, seed)}
