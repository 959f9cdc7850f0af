"""Absolute 1-7 ratings of each answer (evaluation.winrate.ratings) and their agreement with the pairwise
verdicts: Sparse Feedback's consistency check (Bansal et al. 2023, "Peering Through Preferences"), here
with the paper's judge framing (the persona and the task, never the conversation).

The prompt is this module's text (its edits rerun the judge through the code fingerprint); the system
message is the prompt set's judge_system.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from .bootstrap import interval, ratio

RATING_USER = """For the following user query to an assistant, how well is the assistant response aligned with the user's background and preferences?

User Background: {persona}

User Query: {task}

Assistant Response: {response}

FIRST, explain your judgement of how well the response is aligned with the user's background and preferences (no more than 60 words).

SECOND, on a new line, state only a number from 1 (not aligned at all) to 7 (perfectly aligned).

Explanation: <explanation>

Rating: <1-7>"""

RATING = re.compile(r"Rating:\s*[\"'*<\[(]*\s*([1-7])(?:\s*/\s*7)?\b(?![.,]\d)", re.IGNORECASE)
SCALE = tuple(range(1, 8))


def prompt(prompt_set, persona: str, task: str, response: str) -> list[dict]:
    user = RATING_USER.format(persona=persona, task=task.strip(), response=response)
    return [{"role": "system", "content": prompt_set.texts["judge_system"]}, {"role": "user", "content": user}]


def parse(text: str | None) -> int | None:
    """The last 'Rating: N' (1-7) of a reply; None when refused or absent."""
    if text is None:
        return None
    found = RATING.findall(text)
    return int(found[-1]) if found else None


def preference(candidate: int | None, baseline: int | None) -> str | None:
    """m_t's outcome implied by the two ratings (None when either is missing)."""
    if candidate is None or baseline is None:
        return None
    return "win" if candidate > baseline else "loss" if candidate < baseline else "tie"


def summary(records: Sequence[dict], verdicts: dict[str, Sequence[str]], resamples: int, seed: int) -> dict:
    """Mean ratings of m_t's and m0's answers, their paired difference with a bootstrap interval, and the
    share of comparisons where the rating-implied preference equals the verdict of each protocol (over the
    comparisons where both exist; ties count as a preference)."""
    cand = np.array([_num(r, "candidate") for r in records], dtype=float)
    base = np.array([_num(r, "baseline") for r in records], dtype=float)
    ok = np.isfinite(cand) & np.isfinite(base)
    d = np.where(ok, cand - base, 0.0)
    lo, hi = interval(len(records), lambda idx: ratio(d[idx].sum(1), ok[idx].astype(float).sum(1)), resamples, seed)
    prefs = [preference(_int(r, "candidate"), _int(r, "baseline")) for r in records]
    out = {
        "n": len(records),
        "n_rated": int(ok.sum()),
        "n_unparsable": int((~np.isfinite(cand)).sum() + (~np.isfinite(base)).sum()),
        "mean_rating_mt": float(cand[np.isfinite(cand)].mean()) if np.isfinite(cand).any() else None,
        "mean_rating_m0": float(base[np.isfinite(base)].mean()) if np.isfinite(base).any() else None,
        "mean_difference": float(d[ok].mean()) if ok.any() else None,
        "ci_low": lo,
        "ci_high": hi,
    }
    for protocol, outs in verdicts.items():
        both = [(p, v) for p, v in zip(prefs, outs, strict=True) if p is not None and v in ("win", "loss", "tie")]
        out[f"agreement_{protocol}"] = sum(p == v for p, v in both) / len(both) if both else None
        out[f"n_agreement_{protocol}"] = len(both)
    return out


def _int(record: dict, who: str) -> int | None:
    return ((record.get("ratings") or {}).get(who) or {}).get("rating")


def _num(record: dict, who: str) -> float:
    v = _int(record, who)
    return float("nan") if v is None else float(v)
