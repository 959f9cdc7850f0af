"""The judge records the summary reads, per (trial, answer set, questioner): each judge's file, and a panel's
verdict (stargate.evaluation.agreement.panel_records)."""

from __future__ import annotations

from collections.abc import Callable

from ..evaluation import agreement
from ..records import read_jsonl

ABSTAIN = "abstain"


class Judged:
    """Judge records per (trial, answer set, t): each judge's file and the panel's verdict (the one judge's
    records when there is no panel). A panel's `abstain` (abstain_on_disagreement) is read as unparsable
    by every win rate, and counted."""

    def __init__(self, m: dict, rule: str = "majority"):
        self.m, self.rule = m, rule
        self.by_trial = {1: m, **{int(j): tm for j, tm in (m.get("trials") or {}).items()}}
        self.judges = list(m.get("panel") or {}) or ["judge"]
        self._files: dict[str, list[dict]] = {}
        self.n_abstain = 0
        self._panel: dict[tuple, list[dict]] = {}

    def _read(self, path: str) -> list[dict]:
        if path not in self._files:
            self._files[path] = read_jsonl(path, required=("pair", "judged"), allow_empty=True)
        return self._files[path]

    def member(self, judge: str, trial: int, answer_set: str, t: int) -> list[dict]:
        tm = self.by_trial[trial]
        if tm.get("panel"):
            return self._read(tm["panel"][judge][answer_set][t])
        return self._read(tm["judge"][answer_set][t])

    def records(self, trial: int, answer_set: str, t: int) -> list[dict]:
        """The records win rates are read from: the panel's verdict per judged order, or the one judge's."""
        if len(self.judges) < 2:
            return self.member(self.judges[0], trial, answer_set, t)
        key = (trial, answer_set, t)
        if key not in self._panel:
            files = [self.member(j, trial, answer_set, t) for j in self.judges]
            recs = agreement.panel_records(files, self.rule)
            for r in recs:
                for j in r["judged"].values():
                    if j["outcome"] == ABSTAIN:
                        self.n_abstain += 1
                        j["outcome"] = "unparsable"
                        j["abstained"] = True
            self._panel[key] = recs
        return self._panel[key]

    def reader(self, trial: int = 1) -> Callable[[str, int, str], list[dict]]:
        """records(answer_set, t, path) for the summary's win-rate, bias and rating tables."""
        return lambda answer_set, t, path: self.records(trial, answer_set, t)
