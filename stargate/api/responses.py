"""Answers in the cache: look calls up, and store a new answer (ledger line first, then the entry).

Entry format (unchanged; `cache.py` writes it atomically)::

    {"key": ..., "written_at": ..., "model": ..., "request": {"messages", "sampling"},
     "response": {"id", "model", "choices": [{"text", "finish_reason"}], "usage": {...}},
     "source": "paid" | "batch", "stage": ..., "refusal": {...}  (only for a request refused with HTTP 400)}

A choice whose finish_reason is `content_filter` is a refusal: `texts` gives None for it. Refusals are
stored like any answer, so a refused request is never paid for twice.
"""

from __future__ import annotations

from collections.abc import Iterable

from .accounting import Accounting
from .cache import ApiCache
from .requests import CONTENT_FILTER_FINISH, ApiCall


def texts(entry: dict) -> list[str | None]:
    """The completions of a cached entry in choice order; None for one refused by a content filter."""
    return [
        None if c.get("finish_reason") == CONTENT_FILTER_FINISH else c.get("text") or ""
        for c in entry["response"]["choices"]
    ]


class Responses:
    """The cache plus the accounting of one backend: every answer enters through `store`."""

    def __init__(self, cache: ApiCache, accounting: Accounting):
        self.cache, self.accounting = cache, accounting

    def lookup(self, calls: Iterable[ApiCall]) -> dict[str, dict]:
        """Cached entries of these calls by key; the replays get one `cached` ledger line."""
        found: dict[str, dict] = {}
        tokens = [0, 0]
        for call in calls:
            if call.key in found:
                continue
            entry = self.cache.get(call.key)
            if entry is not None:
                found[call.key] = entry
                usage = entry["response"].get("usage") or {}
                tokens[0] += int(usage.get("prompt_tokens") or 0)
                tokens[1] += int(usage.get("completion_tokens") or 0)
        self.accounting.record_cached(len(found), *tokens)
        return found

    def store(self, call: ApiCall, body: dict, kind: str) -> dict:
        """Record an answered call (`body` = chat-completion JSON, already validated) and cache it."""
        acc = self.accounting
        pt, ct = acc.record_call(call, body.get("usage"), kind)  # before the entry: a kill over-counts
        choices = sorted(body.get("choices") or [], key=lambda c: c.get("index", 0))
        response = {
            "id": body.get("id"),
            "model": body.get("model"),
            "choices": [
                {"text": (c.get("message") or {}).get("content") or "", "finish_reason": c.get("finish_reason")}
                for c in choices
            ],
            "usage": {"prompt_tokens": pt, "completion_tokens": ct},
        }
        reasons = acc.tally.finish_reasons
        for c in response["choices"]:
            reasons[str(c["finish_reason"])] = reasons.get(str(c["finish_reason"]), 0) + 1
        return self._put(call, response, kind)

    def store_refusal(self, call: ApiCall, kind: str, status: int, code: str, message: str) -> dict:
        """A request a content filter refused outright (HTTP 400): n refused choices, nothing billed."""
        self.accounting.record_refusal(call)
        response = {
            "id": None,
            "model": None,
            "choices": [{"text": "", "finish_reason": CONTENT_FILTER_FINISH}] * call.sampling["n"],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0},
        }
        refusal = {"status": status, "code": code, "message": message[:500]}
        return self._put(call, response, kind, refusal=refusal)

    def _put(self, call: ApiCall, response: dict, kind: str, **more: dict) -> dict:
        entry = {
            "model": self.accounting.model,
            "request": {"messages": call.messages, "sampling": call.sampling},
            "response": response,
            "source": kind,
            "stage": self.accounting.stage,
            **more,
        }
        self.cache.put(call.key, entry)
        return entry
