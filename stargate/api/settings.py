"""What the runners (online.py, batch.py) are told: a small explicit settings object, and what they report."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .requests import ApiCall

MAX_RETRY_AFTER_S = 120.0


@dataclass(frozen=True)
class RunSettings:
    """How to make the calls of one stage. Built by the backend facade from its options."""

    model: str
    stage: str = "unlabelled"
    max_concurrency: int = 8
    max_retries: int = 6
    timeout_s: float = 120.0
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    max_tokens_param: str = "max_tokens"
    send_seed: bool = True
    batch_poll_s: float = 30.0
    batch_max_wait_s: float = 26 * 3600.0
    batch_endpoint: str = "/v1/chat/completions"
    key_env: str = "OPENAI_API_KEY"  # named in the hint of a 401, never read here

    def body(self, call: ApiCall) -> dict:
        return call.body(self.model, self.max_tokens_param, self.send_seed)

    def backoff_delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Exponential backoff with equal jitter: uniform in [d/2, d], d = min(max, base * 2**attempt);
        a server's Retry-After wins when it is longer (capped)."""
        d = min(self.backoff_max_s, self.backoff_base_s * (2**attempt))
        delay = d / 2 + random.uniform(0, d / 2)
        if retry_after is not None:
            delay = max(delay, min(retry_after, MAX_RETRY_AFTER_S))
        return delay


@dataclass
class RunOutcome:
    """Calls a runner could not answer: failed (with the message naming the call) or skipped (not started
    because the budget could not take them, `budget_stopped`, or after a failure that concerns every call)."""

    failures: list[tuple[ApiCall, str]] = field(default_factory=list)
    skipped: list[ApiCall] = field(default_factory=list)
    budget_stopped: bool = False
