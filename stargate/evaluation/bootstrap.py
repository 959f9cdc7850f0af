"""Seeded percentile bootstrap: 95 % intervals with the pair as the resampled unit."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

LEVEL = 0.95


def interval(
    n_units: int, statistic: Callable[[np.ndarray], np.ndarray], resamples: int, seed: int
) -> tuple[float | None, float | None]:
    """Percentile interval of `statistic` over `resamples` draws of n_units units with replacement.

    `statistic` gets a (resamples, n_units) index matrix and returns one value per row (NaN where the
    statistic is undefined on that draw, e.g. a win rate with no valid verdict); NaN draws are left out.
    No units, or no defined draw: (None, None).
    """
    if n_units == 0:
        return None, None
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n_units, size=(resamples, n_units))
    values = np.asarray(statistic(idx), dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None, None
    lo, hi = np.quantile(values, [(1 - LEVEL) / 2, 1 - (1 - LEVEL) / 2])
    return float(lo), float(hi)


def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num/den row-wise with NaN where den is 0 (no warning)."""
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out
