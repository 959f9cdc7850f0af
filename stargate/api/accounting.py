"""Money and tokens spent on API calls: the price table, the ledger, the budget, and the one check that
decides whether a call may be made.

Ledger: `<api cache dir>/ledger.jsonl`, append-only, one JSON object per line::

    {"ts": ..., "stage": "oracle", "model": "gpt-4", "kind": "paid" | "batch" | "cached" | "refused",
     "calls": 1, "key": "<cache key>", "prompt_tokens": 412, "completion_tokens": 287, "cost_usd": 0.02958}

A paid call's line is written *before* its cache entry (`responses.py`), so a kill in between can only
over-count (the rerun pays for that call again and says so), never under-count. Replays from the cache
cost nothing and are summarised as one `cached` line per generate() call. Appends are serialised with
flock and a line left half-written by a kill is skipped by readers.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import StargateError
from .requests import ApiCall

# USD per 1,000 tokens (input, output), list prices for the plain (non-batch) API. They change: set
# `prices` in the role options (or in `api:`) for a real run. gpt-4 is the price the original code
# hard-coded (gpt4.py: 0.03 / 0.06), i.e. what the paper paid for its Azure "gpt-4" deployment.
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.00015, 0.0006),
    "gpt-4o": (0.0025, 0.01),
    "gpt-4.1-nano": (0.0001, 0.0004),
    "gpt-4.1-mini": (0.0004, 0.0016),
    "gpt-4.1": (0.002, 0.008),
    "gpt-4-turbo": (0.01, 0.03),
    "gpt-4-32k": (0.06, 0.12),
    "gpt-4": (0.03, 0.06),
    "gpt-3.5-turbo": (0.0005, 0.0015),
}
BATCH_DISCOUNT = 0.5  # the Batch API bills half the synchronous price
Price = tuple[float, float]


class BudgetExceeded(StargateError):
    """The budget cap stopped a stage; everything already answered is in the cache."""


# ---------------------------------------------------------------------------------------- prices
def resolve_prices(model: str, prices: Any = None) -> Price | None:
    """(input, output) USD per 1k tokens for `model`.

    `prices` may be {input_per_1k, output_per_1k}, or a mapping model name -> that dict. Without it,
    the built-in table is matched by the longest model-name prefix. None: unknown (costs count as 0).
    """
    if prices:
        if not isinstance(prices, dict):
            raise StargateError("option 'prices' must be {input_per_1k: X, output_per_1k: Y} (USD per 1,000 tokens)")
        if "input_per_1k" in prices or "output_per_1k" in prices:
            try:
                return float(prices.get("input_per_1k", 0.0)), float(prices.get("output_per_1k", 0.0))
            except (TypeError, ValueError):
                raise StargateError("option 'prices': input_per_1k and output_per_1k must be numbers") from None
        if model in prices:
            return resolve_prices(model, prices[model])
    for name in sorted(DEFAULT_PRICES, key=len, reverse=True):
        if model == name or model.startswith(name + "-") or model.startswith(name + "@"):
            return DEFAULT_PRICES[name]
    return None


def call_cost(prompt_tokens: int, completion_tokens: int, price: Price | None, batch: bool = False) -> float:
    if price is None:
        return 0.0
    cost = prompt_tokens / 1000.0 * price[0] + completion_tokens / 1000.0 * price[1]
    return cost * (BATCH_DISCOUNT if batch else 1.0)


# ---------------------------------------------------------------------------------------- ledger
class Ledger:
    """Append-only JSONL of API spending, shared by every process that uses the same cache folder."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._offset = 0
        self._spent: dict[str, float] = defaultdict(float)
        self._bad_lines = 0

    def append(self, record: dict) -> None:
        rec = {"ts": round(time.time(), 3), **record}
        line = (json.dumps(rec, ensure_ascii=False) + "\n").encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line  # a previous writer was killed mid-line: keep our line whole
            os.write(fd, line)
            os.fsync(fd)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def records(self) -> list[dict]:
        if not self.path.exists():
            return []
        out = []
        with self.path.open("rb") as fh:
            for raw in fh:
                rec = _parse_line(raw)
                if rec is not None:
                    out.append(rec)
        return out

    def spent(self, stage: str | None = None) -> float:
        """USD recorded so far (all stages, or one). Reads only what was appended since the last call."""
        if self.path.exists():
            with self.path.open("rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
            end = data.rfind(b"\n") + 1  # leave a trailing partial line for the next read
            for raw in data[:end].splitlines():
                rec = _parse_line(raw)
                if rec is None:
                    if raw.strip():
                        self._bad_lines += 1
                    continue
                cost = float(rec.get("cost_usd") or 0.0)
                self._spent["*"] += cost
                self._spent[str(rec.get("stage"))] += cost
            self._offset += end
        return self._spent["*" if stage is None else stage]

    def summary(self) -> dict[str, dict[str, float]]:
        """Per stage: paid/batch/cached/refused calls, tokens and USD."""
        out: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for rec in self.records():
            s = out[str(rec.get("stage"))]
            kind = rec.get("kind", "paid")
            s[f"{kind}_calls"] += rec.get("calls", 1)
            s["prompt_tokens"] += rec.get("prompt_tokens", 0) if kind != "cached" else 0
            s["completion_tokens"] += rec.get("completion_tokens", 0) if kind != "cached" else 0
            s["cost_usd"] += float(rec.get("cost_usd") or 0.0)
        return {k: dict(v) for k, v in out.items()}


def _parse_line(raw: bytes) -> dict | None:
    try:
        rec = json.loads(raw)
    except ValueError:
        return None
    return rec if isinstance(rec, dict) else None


class Budget:
    """Stops new calls once spent (from the ledger) + in-flight estimates + the next estimate > limit."""

    def __init__(self, ledger: Ledger, limit_usd: float | None, stage: str | None = None):
        self.ledger, self.limit, self.stage = ledger, limit_usd, stage
        self.reserved = 0.0

    def try_reserve(self, estimate_usd: float) -> bool:
        if self.limit is None:
            return True
        if self.spent() + self.reserved + estimate_usd > self.limit + 1e-12:
            return False
        self.reserved += estimate_usd
        return True

    def release(self, estimate_usd: float) -> None:
        if self.limit is not None:
            self.reserved = max(0.0, self.reserved - estimate_usd)

    def spent(self) -> float:
        return self.ledger.spent(self.stage)


# ------------------------------------------------------------------------------ one backend's books
@dataclass
class Tally:
    """What one backend did, for the artifact's .meta.json (`stats.extra`). Tokens and USD: calls made."""

    api_calls: int = 0
    cache_hits: int = 0
    attempts: int = 0
    retries: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    failed: int = 0
    skipped_budget: int = 0
    finish_reasons: dict[str, int] = field(default_factory=dict)


class Accounting:
    """Ledger, budget and prices of one backend (one model, one stage): both runners go through it."""

    def __init__(
        self,
        ledger: Ledger,
        model: str,
        stage: str,
        price: Price | None,
        budget_usd: float | None = None,
        budget_scope: str = "total",
    ):
        if budget_scope not in ("total", "stage"):
            raise StargateError(f"option 'budget_scope' must be 'total' or 'stage', got {budget_scope!r}")
        self.ledger, self.model, self.stage, self.price = ledger, model, stage, price
        self.budget = Budget(
            ledger, None if budget_usd is None else float(budget_usd), stage=stage if budget_scope == "stage" else None
        )
        self.tally = Tally()

    def estimate(self, call: ApiCall, batch: bool = False) -> float:
        """Upper bound of a call's cost: its prompt estimate plus n x max_tokens out."""
        return call_cost(call.prompt_tokens_est, call.max_output_tokens(), self.price, batch)

    def reserve(self, call: ApiCall, batch: bool = False) -> float | None:
        """The budget check for one call: the amount reserved (give it back with `release` once the call
        has ended and its cost is in the ledger), or None: it does not fit, skip it."""
        est = self.estimate(call, batch)
        return est if self.budget.try_reserve(est) else None

    def release(self, amount: float) -> None:
        self.budget.release(amount)

    def record_call(self, call: ApiCall, usage: dict | None, kind: str) -> tuple[int, int]:
        """Ledger line of one answered call (`kind` paid or batch). Returns (prompt, completion) tokens."""
        usage = usage or {}
        pt = int(usage.get("prompt_tokens") or call.prompt_tokens_est)
        ct = int(usage.get("completion_tokens") or 0)
        cost = call_cost(pt, ct, self.price, batch=(kind == "batch"))
        self._line(kind, calls=1, key=call.key, prompt_tokens=pt, completion_tokens=ct, cost_usd=round(cost, 8))
        t = self.tally
        t.api_calls += 1
        t.tokens_in += pt
        t.tokens_out += ct
        t.cost_usd += cost
        return pt, ct

    def record_refusal(self, call: ApiCall) -> None:
        """A request a content filter refused (HTTP 400): no tokens billed, counted as a call."""
        self._line("refused", calls=1, key=call.key, prompt_tokens=0, completion_tokens=0, cost_usd=0.0)
        self.tally.api_calls += 1

    def record_cached(self, hits: int, prompt_tokens: int, completion_tokens: int) -> None:
        self.tally.cache_hits += hits
        if hits:
            self._line(
                "cached", calls=hits, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, cost_usd=0.0
            )

    def budget_exceeded(self, done: int, total: int, not_made: int) -> BudgetExceeded:
        b = self.budget
        scope = " for this stage" if b.stage else ""
        return BudgetExceeded(
            f"{self.stage}: budget_usd={b.limit:g} reached ({b.spent():.4f} USD already spent in "
            f"{self.ledger.path}{scope}); {done} of {total} requests are answered and cached, {not_made} were "
            f"not made. Raise budget_usd and rerun: cached calls cost nothing"
        )

    def _line(self, kind: str, **fields: Any) -> None:
        self.ledger.append({"stage": self.stage, "model": self.model, "kind": kind, **fields})
