"""Judge panel statistics: agreement between judges, with themselves and with human labels, and the panel
verdict.

An item is one judged comparison in one order, (pair, order), order = where m_t was shown ("A" / "B"); its
label is m_t's outcome there (win, loss, tie; a judge file's `judged[order]["outcome"]`). Unparsable and
refused verdicts are no label: such items are left out and counted (`n_dropped`).

- exact agreement p_o = share of common items with the same label.
- Cohen's κ = (p_o - p_e) / (1 - p_e), p_e = Σ_c p_1(c) p_2(c) the agreement expected by chance from the
  two raters' own label shares (None when p_e = 1: both always gave one and the same label). κ = 1 is
  perfect agreement, 0 chance level; p_o is reported beside it because it overstates agreement when one
  label dominates. Bootstrap 95 % intervals resample items.
- position consistency (one judge): over pairs judged in both orders with a label in both, the share whose
  outcome for m_t is the same with m_t shown as A and as B (a verdict that follows the answer, not the slot).
- repetition stability (one judge): p_o and κ between a judge's first call and a repeated call on the same
  items (a second judge file of the same judge on the same answers, or `judged[order]["repeats"]`: the
  outcomes of further calls in one record).
- human labels: p_o and κ of a judge against a file of (pair, order, verdict) rows (`read_human_labels`).
- panel verdict per item from the judges' labels: `majority` = the label more than half of the labelled
  votes share, else "tie" (a split panel); `abstain_on_disagreement` = the label when all labelled votes
  agree, else "abstain" (no verdict, to be counted like an unparsable one). No labelled vote: "unparsable".
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..errors import InputError, StargateError
from .bootstrap import interval

LABELS = ("win", "loss", "tie")
PANEL_RULES = ("majority", "abstain_on_disagreement")
LETTER_VERDICTS = {"a": "A", "b": "B", "tie": "tie"}  # human files may give the preferred letter instead

Item = tuple[str, str]  # (pair, order)


def labels_of(records: Sequence[dict]) -> dict[Item, str | None]:
    """{(pair, order): m_t's outcome} of a judge file's records (None: unparsable, refused)."""
    out = {}
    for r in records:
        for order, j in (r.get("judged") or {}).items():
            out[(r["pair"], order)] = j["outcome"] if j.get("outcome") in LABELS else None
    return out


def cohen_kappa(a: Sequence[str | None], b: Sequence[str | None], resamples: int = 0, seed: int = 1) -> dict:
    """p_o, p_e and κ of two raters' labels of the same items (None: no label, item left out); with
    resamples > 0 also bootstrap intervals of p_o and κ (items resampled)."""
    if len(a) != len(b):
        raise StargateError(f"kappa: {len(a)} and {len(b)} labels; give both raters' labels of the same items")
    keep = [i for i in range(len(a)) if a[i] is not None and b[i] is not None]
    cats = sorted({a[i] for i in keep} | {b[i] for i in keep})
    ia = np.array([cats.index(a[i]) for i in keep], dtype=int)
    ib = np.array([cats.index(b[i]) for i in keep], dtype=int)
    n = len(keep)
    out = {"n": n, "n_dropped": len(a) - n, "agreement": None, "expected": None, "kappa": None}
    if n == 0:
        return out
    po, pe, kappa = _kappa(ia[None, :], ib[None, :], len(cats))
    out.update(agreement=float(po[0]), expected=float(pe[0]), kappa=None if np.isnan(kappa[0]) else float(kappa[0]))
    if resamples > 0:
        out["agreement_ci_low"], out["agreement_ci_high"] = interval(
            n, lambda idx: _kappa(ia[idx], ib[idx], len(cats))[0], resamples, seed
        )
        out["kappa_ci_low"], out["kappa_ci_high"] = interval(
            n, lambda idx: _kappa(ia[idx], ib[idx], len(cats))[2], resamples, seed
        )
    return out


def _kappa(ia: np.ndarray, ib: np.ndarray, n_cats: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row-wise p_o, p_e, κ of (draws, items) label-index matrices; κ NaN where p_e = 1."""
    po = (ia == ib).mean(1)
    pe = sum((ia == c).mean(1) * (ib == c).mean(1) for c in range(n_cats))
    kappa = np.full(po.shape, np.nan)
    np.divide(po - pe, 1 - pe, out=kappa, where=pe < 1 - 1e-12)
    return po, pe, kappa


def judge_agreement(first: Sequence[dict], second: Sequence[dict], resamples: int = 0, seed: int = 1) -> dict:
    """p_o and κ of two judges (their judge files) on the items both judged."""
    la, lb = labels_of(first), labels_of(second)
    items = sorted(set(la) & set(lb))
    out = cohen_kappa([la[i] for i in items], [lb[i] for i in items], resamples, seed)
    out["n_only_first"], out["n_only_second"] = len(set(la) - set(lb)), len(set(lb) - set(la))
    return out


def position_consistency(records: Sequence[dict]) -> dict:
    """Over pairs judged in both orders with a label in both: the share with the same outcome for m_t."""
    both = [
        (r["judged"]["A"].get("outcome"), r["judged"]["B"].get("outcome"))
        for r in records
        if {"A", "B"} <= set(r.get("judged") or {})
    ]
    usable = [(a, b) for a, b in both if a in LABELS and b in LABELS]
    same = sum(a == b for a, b in usable)
    return {
        "n_both_orders": len(both),
        "n": len(usable),
        "n_consistent": same,
        "consistency": same / len(usable) if usable else None,
    }


def repetition_stability(
    records: Sequence[dict], repeat: Sequence[dict] | None = None, resamples: int = 0, seed: int = 1
) -> dict | None:
    """p_o and κ of a judge's verdicts against a repeated call: `repeat` (a second judge file of the same
    judge on the same answers) or else each record's `judged[order]["repeats"]` (first repeat). None when
    there is no repetition."""
    if repeat is not None:
        return judge_agreement(records, repeat, resamples, seed)
    first, again = [], []
    for r in records:
        for j in (r.get("judged") or {}).values():
            if j.get("repeats"):
                first.append(j["outcome"] if j.get("outcome") in LABELS else None)
                rep = j["repeats"][0]
                rep = rep.get("outcome") if isinstance(rep, dict) else rep
                again.append(rep if rep in LABELS else None)
    return cohen_kappa(first, again, resamples, seed) if first else None


def read_human_labels(path: str | Path) -> dict[Item, str]:
    """Human labels, JSONL (.jsonl / .json) or CSV with a header: fields `pair`, `order` (A or B: where m_t
    was shown) and `verdict` (win / loss / tie for m_t, or A / B / tie: the answer the human preferred).
    Returns {(pair, order): m_t's outcome}; errors name the file, line and field."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "human label file does not exist")
    rows: list[tuple[int, dict]] = []
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [k for k in ("pair", "order", "verdict") if k not in (reader.fieldnames or [])]
            if missing:
                raise InputError(path, f"header lacks column(s) {', '.join(missing)}", 1)
            rows = [(i, row) for i, row in enumerate(reader, start=2)]
    elif path.suffix.lower() in (".jsonl", ".json"):
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(path, f"not valid JSON ({exc.msg})", i) from None
            if not isinstance(rec, dict):
                raise InputError(path, f"expected a JSON object, got {type(rec).__name__}", i)
            rows.append((i, rec))
    else:
        raise InputError(path, f"unknown human label format '{path.suffix}'", fix="use .jsonl or .csv")
    out: dict[Item, str] = {}
    for line, rec in rows:
        for field in ("pair", "order", "verdict"):
            if not isinstance(rec.get(field), str) or not rec[field].strip():
                raise InputError(path, f"field '{field}' is missing or empty", line)
        order = rec["order"].strip().upper()
        if order not in ("A", "B"):
            raise InputError(path, f"field 'order' is '{rec['order']}'; give A or B (where m_t was shown)", line)
        out_ = _human_outcome(rec["verdict"], order)
        if out_ is None:
            raise InputError(path, f"field 'verdict' is '{rec['verdict']}'; give win, loss, tie, A or B", line)
        key = (rec["pair"], order)
        if key in out:
            raise InputError(path, f"pair {key[0]} order {order} is labelled twice", line)
        out[key] = out_
    if not out:
        raise InputError(path, "no human labels in the file")
    return out


def _human_outcome(verdict: str, order: str) -> str | None:
    v = verdict.strip().lower()
    if v in LABELS:
        return v
    letter = LETTER_VERDICTS.get(v)
    if letter in ("A", "B"):
        return "win" if letter == order else "loss"
    return letter


def human_agreement(records: Sequence[dict], human: Mapping[Item, str], resamples: int = 0, seed: int = 1) -> dict:
    """p_o and κ of a judge file against human labels on the items both have."""
    labels = labels_of(records)
    items = sorted(set(labels) & set(human))
    out = cohen_kappa([labels[i] for i in items], [human[i] for i in items], resamples, seed)
    out["n_human_unmatched"] = len(set(human) - set(labels))
    return out


def panel_verdict(votes: Sequence[str | None], rule: str) -> str:
    """One item's panel outcome from the judges' outcomes under `rule` (see the module doc)."""
    if rule not in PANEL_RULES:
        raise StargateError(f"panel rule '{rule}': choose one of {', '.join(PANEL_RULES)}")
    usable = [v for v in votes if v in LABELS]
    if not usable:
        return "unparsable"
    label, count = Counter(usable).most_common(1)[0]
    if rule == "majority":
        return label if count > len(usable) / 2 else "tie"
    return label if count == len(usable) else "abstain"


def panel_records(files: Sequence[Sequence[dict]], rule: str) -> list[dict]:
    """The panel's judge file: the first file's records with every order both judged re-decided by the
    panel (`outcome`, and `votes` = each judge's outcome, None where a judge lacks the item)."""
    if not files:
        raise StargateError("judge panel: no judge files")
    labels = [labels_of(f) for f in files]
    out = []
    for r in files[0]:
        judged = {}
        for order in r.get("judged") or {}:
            votes = [lab.get((r["pair"], order)) for lab in labels]
            judged[order] = {"outcome": panel_verdict(votes, rule), "votes": votes}
        out.append({**r, "judged": judged})
    return out
