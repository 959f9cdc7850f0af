"""Repeated trials: k independent test simulations (and judgings) of the same pairs, and their spread.

The data of one figure is a (k, n) matrix `x[j, p]`: trial j (a simulation seed), pair p, one value per cell
(the pair's log-prob of the gold response, the mean over its conversations when it has several; or m_t's
win outcome 1 / 0.5 / 0 for win / tie / loss). NaN marks a cell with no value (an unparsable or refused
verdict); it is left out of every mean.

- mean: the mean of all valid cells, x̄ = Σ_{j,p} x[j,p] / #valid (every cell weighs the same).
- per-trial means m_j = mean_p x[j, p]; the across-trial spread is their sd (ddof 1), min and max.
- interval: a two-level (hierarchical) percentile bootstrap, 95 %. Each draw resamples n pairs with
  replacement, then, independently for every drawn pair, k of that pair's trials with replacement, and
  takes the mean of the drawn cells. Both sampling variances (which pairs, which simulation / judge
  sample) are in the interval; when all trials agree it equals the pairs-only bootstrap.
- paired difference of two questioners on the same pairs and trials: d[j,p] = a[j,p] - b[j,p] (e.g. m_t -
  m0), with the same scheme applied to d (one trial index draws both questioners' cells).
- pass^k (τ-bench): the share of pairs m_t wins in all k trials, estimated for any k <= K trials as
  mean_p C(c_p, k) / C(K, k), c_p = trials pair p was won in (a tie, NaN is not a win); pass@k: the share
  won in at least one of k trials, mean_p [1 - C(K - c_p, k) / C(K, k)]. With k = K: "all" and "any".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from math import comb

import numpy as np

from ..errors import StargateError
from .bootstrap import LEVEL, interval

WIN_VALUE = {"win": 1.0, "tie": 0.5, "loss": 0.0}  # unparsable, refused: NaN
CELLS_PER_CHUNK = 4_000_000  # bootstrap draws are made in chunks of at most this many cells


def win_values(outcomes: Sequence[str]) -> list[float]:
    """m_t's outcomes (win, tie, loss, unparsable, refused) as values 1, 0.5, 0, NaN."""
    return [WIN_VALUE.get(o, float("nan")) for o in outcomes]


def matrix(trials: Sequence[Mapping[str, float | None]], what: str = "trials") -> tuple[list[str], np.ndarray]:
    """(pairs, (k, n) matrix) from one {pair: value} per trial; None is NaN. Every trial must hold the same
    pairs (the trials differ in seeds only)."""
    if not trials:
        raise StargateError(f"{what}: no trials")
    pairs = sorted(trials[0])
    for j, t in enumerate(trials):
        if set(t) != set(pairs):
            diff = sorted(set(t) ^ set(pairs))
            raise StargateError(f"{what}: trial {j} holds other pairs than trial 0 (e.g. {diff[:3]}); same pairs")
    x = np.array([[np.nan if t[p] is None else float(t[p]) for p in pairs] for t in trials], dtype=float)
    return pairs, x


def _as_matrix(values) -> np.ndarray:
    x = np.asarray(values, dtype=float)
    if x.ndim == 1:
        x = x[None, :]  # one trial
    if x.ndim != 2:
        raise StargateError(f"trial values must be a (trials, pairs) matrix, got shape {x.shape}")
    return x


def _mean(cells: np.ndarray, axes) -> np.ndarray:
    ok = np.isfinite(cells)
    total = np.where(ok, cells, 0.0).sum(axes)
    count = ok.sum(axes)
    out = np.full(np.shape(total), np.nan)
    np.divide(total, count, out=out, where=count > 0)
    return out


def hierarchical_draws(values, resamples: int, seed: int) -> np.ndarray:
    """The mean of the drawn cells for each of `resamples` two-level draws (pairs, then trials within each
    drawn pair); NaN where a draw holds no valid cell."""
    x = _as_matrix(values)
    k, n = x.shape
    rng = np.random.default_rng(seed)
    out = np.empty(resamples)
    step = max(1, CELLS_PER_CHUNK // max(1, n * k))
    for start in range(0, resamples, step):
        b = min(step, resamples - start)
        pairs = rng.integers(0, n, size=(b, n))
        trials = rng.integers(0, k, size=(b, n, k))
        out[start : start + b] = _mean(x[trials, pairs[:, :, None]], (1, 2))
    return out


def hierarchical_interval(values, resamples: int, seed: int) -> tuple[float | None, float | None]:
    """Percentile 95 % interval of the mean under the two-level bootstrap; (None, None) with no valid cell."""
    x = _as_matrix(values)
    if x.size == 0:
        return None, None
    draws = hierarchical_draws(x, resamples, seed)
    draws = draws[np.isfinite(draws)]
    if draws.size == 0:
        return None, None
    lo, hi = np.quantile(draws, [(1 - LEVEL) / 2, 1 - (1 - LEVEL) / 2])
    return float(lo), float(hi)


def summarize(values, resamples: int, seed: int) -> dict:
    """Mean of all valid cells, per-trial means, their sd / min / max, and the hierarchical interval."""
    x = _as_matrix(values)
    k, n = x.shape
    per_trial = _mean(x, 1)
    valid = per_trial[np.isfinite(per_trial)]
    mean = _mean(x, (0, 1))
    lo, hi = hierarchical_interval(x, resamples, seed)
    return {
        "k": k,
        "n_pairs": n,
        "n_cells": int(np.isfinite(x).sum()),
        "mean": float(mean) if np.isfinite(mean) else None,
        "per_trial_means": [float(m) if np.isfinite(m) else None for m in per_trial],
        "trial_sd": float(valid.std(ddof=1)) if valid.size > 1 else None,
        "trial_min": float(valid.min()) if valid.size else None,
        "trial_max": float(valid.max()) if valid.size else None,
        "ci_low": lo,
        "ci_high": hi,
    }


def difference(a, b, resamples: int, seed: int) -> dict:
    """`summarize` of d = a - b, two questioners' (k, n) matrices over the same pairs and trials."""
    a, b = _as_matrix(a), _as_matrix(b)
    if a.shape != b.shape:
        raise StargateError(f"paired difference: shapes {a.shape} and {b.shape} differ (same pairs and trials)")
    return summarize(a - b, resamples, seed)


def _pass_rates(wins: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per pair: C(c, k) / C(K, k) (all k won) and 1 - C(K - c, k) / C(K, k) (any of k won)."""
    big_k = wins.shape[0]
    c = wins.sum(0).astype(int)
    total = comb(big_k, k)
    every = np.array([comb(int(ci), k) / total for ci in c])
    some = np.array([1 - comb(big_k - int(ci), k) / total for ci in c])
    return every, some


def consistency(values, k: int | None = None, resamples: int = 2000, seed: int = 1) -> dict:
    """pass^k (share of pairs won in all k trials) and pass@k (in any), over win values (1 = win); k defaults
    to the number of trials; bootstrap 95 % intervals resample pairs."""
    x = _as_matrix(values)
    big_k, n = x.shape
    k = big_k if k is None else k
    if not 1 <= k <= big_k:
        raise StargateError(f"pass^k: k = {k} must be between 1 and the {big_k} trials")
    every, some = _pass_rates(x == 1.0, k)
    out = {"k": k, "trials": big_k, "n_pairs": n}
    for name, per_pair in (("pass_hat_k", every), ("pass_at_k", some)):
        out[name] = float(per_pair.mean()) if n else None
        out[f"{name}_ci_low"], out[f"{name}_ci_high"] = interval(
            n, lambda idx, v=per_pair: v[idx].mean(1), resamples, seed
        )
    return out


def noise_floor(run_a: Mapping[str, object], run_b: Mapping[str, object], resamples: int = 2000, seed: int = 1):
    """Two runs of the same config side by side: per figure in both, difference = b - a and whether it
    exceeds the noise floor.

    A figure is either its (k, n) value matrix (then each run is redrawn with the hierarchical bootstrap,
    independently, and the difference's 95 % interval is the percentile interval of draw_b - draw_a) or a
    summary row {"mean", "ci_low", "ci_high"} (then the interval is difference ± sqrt(h_a² + h_b²), h the
    half-widths of the two intervals, as for independent normal errors). `floor` is the half-width of the
    difference's interval; `exceeds` is True when that interval leaves out 0, i.e. the two runs differ by
    more than trial and pair noise explains. Figures in one run only are listed under `only_in`."""
    rows = []
    for name in sorted(set(run_a) & set(run_b)):
        fa, fb = run_a[name], run_b[name]
        if isinstance(fa, Mapping) and isinstance(fb, Mapping):
            if any(f.get(key) is None for f in (fa, fb) for key in ("mean", "ci_low", "ci_high")):
                rows.append({"figure": name, "difference": None, "floor": None, "exceeds": None})
                continue
            diff = float(fb["mean"]) - float(fa["mean"])
            half = float(np.hypot((fa["ci_high"] - fa["ci_low"]) / 2, (fb["ci_high"] - fb["ci_low"]) / 2))
            lo, hi = diff - half, diff + half
        else:
            xa, xb = _as_matrix(fa), _as_matrix(fb)
            ma, mb = _mean(xa, (0, 1)), _mean(xb, (0, 1))
            draws = hierarchical_draws(xb, resamples, seed + 1) - hierarchical_draws(xa, resamples, seed)
            draws = draws[np.isfinite(draws)]
            if not (np.isfinite(ma) and np.isfinite(mb)) or draws.size == 0:
                rows.append({"figure": name, "difference": None, "floor": None, "exceeds": None})
                continue
            diff = float(mb - ma)
            lo, hi = (float(v) for v in np.quantile(draws, [(1 - LEVEL) / 2, 1 - (1 - LEVEL) / 2]))
        rows.append(
            {
                "figure": name,
                "difference": diff,
                "ci_low": lo,
                "ci_high": hi,
                "floor": (hi - lo) / 2,
                "exceeds": bool(lo > 0 or hi < 0),
            }
        )
    return {"figures": rows, "only_in": {"a": sorted(set(run_a) - set(run_b)), "b": sorted(set(run_b) - set(run_a))}}
