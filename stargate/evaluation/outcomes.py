"""Per-comparison outcomes of a judge file under each position protocol, and their tallies.

A judge record holds, per order it was judged in (m_t shown as "A" or "B"), the verdict's outcome for m_t:
win, loss, tie (the judge said so explicitly), unparsable, refused. Each judge protocol
(stargate.evaluation.protocols) says which orders it reads and how: randomized reads the pair's coin flip,
mt_a / mt_b a fixed order, both_orders both, a verdict that flips with the order counting as a tie.
Ties, unparsable and refused verdicts are kept in the counts; the paper's win rate leaves them out of the
denominator (spec §6.2), the ties-as-half rate keeps ties in.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import protocols
from .bootstrap import interval, ratio

# The columns of a win-rate row (winrates.csv; the report shows the overall rows without group/questioner).
WINRATE_FIELDS = [
    "variant",
    "t",
    "questioner",
    "group",
    "configured",
    "n",
    "wins",
    "losses",
    "ties",
    "unparsable",
    "refused",
    "win_rate",
    "ci_low",
    "ci_high",
    "win_rate_ties_half",
    "ties_half_ci_low",
    "ties_half_ci_high",
]

VALID = ("win", "loss")
OUTCOMES = ("win", "loss", "tie", "unparsable", "refused")


def outcome(record: dict, positions: str, path: str = "judge file") -> str:
    """m_t's outcome on one comparison under a judge protocol (stargate.evaluation.protocols)."""
    return protocols.get(positions).outcome(record, path)


def protocols_of(records: Sequence[dict]) -> list[str]:
    """The judge protocols a judge file can answer: those whose orders every record has."""
    return protocols.served_by(records)


def tally(outcomes: Sequence[str], resamples: int, seed: int) -> dict:
    """Counts, the win rate (ties and invalid left out, as the paper), the ties-as-half rate, and their
    bootstrap 95 % intervals (comparisons resampled)."""
    o = np.asarray(list(outcomes), dtype=object)
    w, lo, ti = (o == "win").astype(float), (o == "loss").astype(float), (o == "tie").astype(float)
    wins, losses, ties = int(w.sum()), int(lo.sum()), int(ti.sum())
    valid = wins + losses
    row = {
        "n": len(o),
        "wins": wins,
        "losses": losses,
        "ties": ties,
        "unparsable": int((o == "unparsable").sum()),
        "refused": int((o == "refused").sum()),
        "win_rate": wins / valid if valid else None,
        "win_rate_ties_half": (wins + 0.5 * ties) / (valid + ties) if valid + ties else None,
    }
    row["ci_low"], row["ci_high"] = interval(
        len(o), lambda idx: ratio(w[idx].sum(1), (w[idx] + lo[idx]).sum(1)), resamples, seed
    )
    row["ties_half_ci_low"], row["ties_half_ci_high"] = interval(
        len(o),
        lambda idx: ratio(w[idx].sum(1) + 0.5 * ti[idx].sum(1), (w[idx] + lo[idx] + ti[idx]).sum(1)),
        resamples,
        seed,
    )
    return row


def position_bias(records: Sequence[dict], resamples: int, seed: int) -> dict | None:
    """Win rate of m_t shown first (A) vs second (B) on the same comparisons, their difference with a paired
    bootstrap interval, and how often the verdict flips with the order. None unless both orders were judged."""
    if "mt_a" not in protocols_of(records) or "mt_b" not in protocols_of(records):
        return None
    a = np.asarray([outcome(r, "mt_a") for r in records], dtype=object)
    b = np.asarray([outcome(r, "mt_b") for r in records], dtype=object)
    wa, va = (a == "win").astype(float), np.isin(a, VALID).astype(float)
    wb, vb = (b == "win").astype(float), np.isin(b, VALID).astype(float)
    both = (va * vb).astype(bool)
    flips = int((a[both] != b[both]).sum())
    rate_a = wa.sum() / va.sum() if va.sum() else None
    rate_b = wb.sum() / vb.sum() if vb.sum() else None
    lo, hi = interval(
        len(records),
        lambda idx: ratio(wa[idx].sum(1), va[idx].sum(1)) - ratio(wb[idx].sum(1), vb[idx].sum(1)),
        resamples,
        seed,
    )
    return {
        "n": len(records),
        "win_rate_mt_first": rate_a,
        "win_rate_mt_second": rate_b,
        "first_minus_second": rate_a - rate_b if rate_a is not None and rate_b is not None else None,
        "ci_low": lo,
        "ci_high": hi,
        "n_decided_first": int(va.sum()),
        "n_decided_second": int(vb.sum()),
        "n_both_valid": int(both.sum()),
        "n_flipped": flips,
        "flip_rate": flips / int(both.sum()) if both.sum() else None,
        # how often the judge picked the answer shown as A, whatever its model: the raw position bias
        "share_first_chosen": _share_first(a, b),
    }


TOO_FEW_DECIDED = 10  # fewer decided comparisons than this: the headline says so plainly


def headline(w: dict) -> dict:
    """The figure to lead with for one win-rate row. The win rate drops ties and invalid verdicts, so when
    they dominate (or both orders were judged, where a flip is a tie by design) it rests on few comparisons
    (3 wins, 0 losses and 45 ties read as 1.0 with a zero-width interval): then the ties-as-half rate leads.
    Always with the count of decided comparisons."""
    decided = int(w["wins"]) + int(w["losses"])
    undecided = int(w["ties"]) + int(w["unparsable"]) + int(w["refused"])
    protocol = protocols.PROTOCOLS.get(w["variant"].rsplit("-", 1)[-1])
    ties_half = (protocol is not None and protocol.ties_by_design) or undecided > decided
    key, lo, hi = (
        ("win_rate_ties_half", "ties_half_ci_low", "ties_half_ci_high")
        if ties_half
        else ("win_rate", "ci_low", "ci_high")
    )
    note = f"{w['wins']} wins, {w['losses']} losses, {w['ties']} ties"
    if int(w["unparsable"]) + int(w["refused"]):
        note += f", {int(w['unparsable']) + int(w['refused'])} unparsable or refused"
    note += f": {decided} of {w['n']} comparisons decided"
    if decided < TOO_FEW_DECIDED:
        note += f" (too few decided for a win rate to mean much: fewer than {TOO_FEW_DECIDED})"
    return {
        "variant": w["variant"],
        "t": w["t"],
        "rate_kind": "ties_half" if ties_half else "win_rate",
        "rate": w[key],
        "ci_low": w[lo],
        "ci_high": w[hi],
        "decided": decided,
        "n": w["n"],
        "note": note,
    }


def _share_first(a: np.ndarray, b: np.ndarray) -> float | None:
    """Share of valid verdicts that chose position A: m_t won when shown A, or m0 won when m_t was B."""
    chose_a = int((a == "win").sum() + (b == "loss").sum())
    valid = int(np.isin(a, VALID).sum() + np.isin(b, VALID).sum())
    return chose_a / valid if valid else None
