"""The online runner: the calls missing from the cache, made concurrently with retries.

Bounded concurrency (a semaphore of `max_concurrency`); retries with exponential backoff and equal jitter
on 408/409/429/5xx, timeouts, connection errors and malformed replies (an HTTP 200 whose body is not JSON
or not a chat completion), honouring Retry-After. Each answer is stored
(`responses.py`: ledger line, then cache entry) before the next step uses it. A failure that concerns
every call (retries exhausted, 401/403/404) stops new calls; a 400 concerns one request and lets the
others finish. A 400 from a content filter is stored as a refusal (never re-paid).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import openai

from ..log import get_logger
from ..progress import Progress
from .requests import ApiCall, ApiCallError, content_filter_code, malformed_body, validate_body
from .responses import Responses
from .settings import RunOutcome, RunSettings

log = get_logger(__name__)

RETRYABLE_STATUS = {408, 409, 429}
REQUEST_SPECIFIC_STATUS = {400, 413, 422}  # this request is refused; the others may still succeed


async def run_online(calls: list[ApiCall], settings: RunSettings, client, responses: Responses) -> RunOutcome:
    """Make `calls` (distinct keys, none cached) through `client` (an openai.AsyncOpenAI)."""
    acc = responses.accounting
    sem = asyncio.Semaphore(settings.max_concurrency)
    stop = asyncio.Event()
    outcome = RunOutcome()
    progress = _Progress(settings.stage, len(calls))

    async def one(call: ApiCall) -> None:
        async with sem:
            if stop.is_set():
                outcome.skipped.append(call)
                return
            reserved = acc.reserve(call)
            if reserved is None:  # the budget cannot take this call: start no more
                stop.set()
                outcome.budget_stopped = True
                outcome.skipped.append(call)
                return
            try:
                await _call_with_retries(client, call, settings, responses)
                progress.tick(acc.tally)
            except ApiCallError as exc:
                outcome.failures.append((call, str(exc)))
                acc.tally.failed += 1
                if exc.fatal:
                    stop.set()
            finally:
                acc.release(reserved)

    await asyncio.gather(*(one(c) for c in calls))
    return outcome


async def _call_with_retries(client, call: ApiCall, settings: RunSettings, responses: Responses) -> dict:
    """Make one call until it is answered and stored; returns its cache entry or raises ApiCallError."""
    tally = responses.accounting.tally
    body = settings.body(call)
    last = "no attempt"
    for attempt in range(settings.max_retries + 1):
        retry_after = None
        tally.attempts += 1
        try:
            resp = await client.chat.completions.create(**body, timeout=settings.timeout_s)
            data = _reply_data(resp)
        except openai.APIStatusError as exc:
            status = exc.status_code
            last = f"HTTP {status}: {_short(exc)}"
            code = content_filter_code(exc.body)
            if status == 400 and code:
                return responses.store_refusal(call, "paid", status, code, _short(exc, 500))
            if status not in RETRYABLE_STATUS and status < 500:
                hint = _status_hint(status, settings.key_env)
                fatal = status not in REQUEST_SPECIFIC_STATUS
                raise ApiCallError(f"{call.where()}: {last}{hint} (not retried)", fatal=fatal) from None
            retry_after = _retry_after(exc)
        except openai.APITimeoutError:
            last = f"timed out after {settings.timeout_s:g} s"
        except openai.APIConnectionError as exc:
            last = f"connection error to {client.base_url} ({_short(exc)}): is the server up and the URL right?"
        except openai.APIError as exc:  # e.g. a body the SDK's strict mode refuses
            last = f"{type(exc).__name__}: {_short(exc)}"
        except (ValueError, TypeError) as exc:  # HTTP 200 whose body the SDK cannot parse (truncated, not JSON)
            last = f"malformed reply from {client.base_url} ({type(exc).__name__}: {_short(exc)})"
        else:
            problem = malformed_body(data)  # valid JSON, but not a chat completion: retried like a 5xx
            if problem is None:
                problem = validate_body(data, call.sampling["n"])  # a usable reply this request cannot use
                if problem is not None:
                    raise ApiCallError(f"{call.where()}: {problem}", fatal=False)
                return responses.store(call, data, kind="paid")
            last = f"malformed reply from {client.base_url}: {problem}"
        if attempt < settings.max_retries:
            delay = settings.backoff_delay(attempt, retry_after)
            tally.retries += 1
            log.warning(
                "%s: %s: %s; retry %d/%d in %.1f s",
                settings.stage,
                call.where(),
                last,
                attempt + 1,
                settings.max_retries,
                delay,
            )
            await asyncio.sleep(delay)
    url = "" if str(client.base_url) in last else f" to {client.base_url}"
    raise ApiCallError(f"{call.where()}: failed after {settings.max_retries + 1} attempts{url}; last error: {last}")


def _reply_data(resp: Any) -> Any:
    """The reply as plain JSON data (a ChatCompletion from the SDK; whatever else a server sent, as is)."""
    if hasattr(resp, "model_dump"):
        return resp.model_dump(warnings=False)  # a mangled body: no pydantic serializer warnings
    return dict(resp) if isinstance(resp, Mapping) else resp


def _retry_after(exc) -> float | None:
    headers = getattr(getattr(exc, "response", None), "headers", None) or {}
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is not None:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                continue
    return None


def _status_hint(status: int, env: str) -> str:
    if status == 401:
        return f" (check the key in ${env})"
    if status == 403:
        return " (the key has no access to this model or resource)"
    if status == 404:
        return " (unknown model or deployment name, or wrong base_url)"
    if status == 400:
        return " (the request was rejected)"
    return ""


def _short(exc: Exception, limit: int = 200) -> str:
    text = " ".join(str(exc).split())
    return text[:limit] + ("..." if len(text) > limit else "")


class _Progress(Progress):
    """API calls made (the standard progress line) with what they cost so far."""

    def __init__(self, stage: str, total: int):
        super().__init__(f"{stage} api calls", total, "calls")
        self.tally = None

    def tick(self, tally) -> None:
        self.tally = tally
        self.advance(1)

    def line(self) -> str:
        t = self.tally
        extra = f" ({t.retries} retries, {t.tokens_in}+{t.tokens_out} tokens, {t.cost_usd:.4f} USD)" if t else ""
        return super().line() + extra
