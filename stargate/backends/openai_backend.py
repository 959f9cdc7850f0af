"""The `openai` backend: OpenAI, Azure OpenAI, or any OpenAI-compatible server (vLLM, llama.cpp, ...).

Chat prompts only. Every call goes through the on-disk cache (`cache.py`): a call whose key is cached is
replayed for free, a new call is made with bounded concurrency and retried with exponential backoff and
jitter on 408/409/429/5xx, timeouts and connection errors, then recorded in the ledger (`stargate/cost.py`)
and written to the cache *before* its text is used. A call that still fails is reported with its prompt
index and cache key; it is never replaced by a made-up answer (the original returned "Final Response: C").
With `batch: true` the missing calls go through the OpenAI Batch API instead (`batch.py`).

Options (role `options` in config; every one optional):

    base_url          OpenAI-compatible server, e.g. http://127.0.0.1:8011/v1 (default: api.openai.com)
    api_key_env       NAME of the environment variable holding the key (default OPENAI_API_KEY, or
                      AZURE_OPENAI_API_KEY with azure_endpoint). Keys are never read from config, logged or
                      written. With base_url and the variable unset, the placeholder "EMPTY" is sent.
    azure_endpoint    Azure OpenAI resource URL; uses AsyncAzureOpenAI (the model is the deployment name)
    organization_env  NAME of an environment variable holding an OpenAI organization id (optional)
    api_version       Azure API version (or $OPENAI_API_VERSION), e.g. 2024-10-21
    max_concurrency   requests in flight at once (default 8; the paper ran 100)
    max_retries       retries per call after the first attempt (default 6)
    timeout_s         per-attempt timeout in seconds (default 120)
    backoff_base_s    first backoff delay (default 1.0); doubles per retry, "equal jitter", capped by
    backoff_max_s     (default 60); a Retry-After header from the server is honoured (capped at 120 s)
    cache_dir         API cache folder (default $STARGATE_API_CACHE, else resources/api-cache)
    stage             label of the ledger lines (the pipeline passes the stage name)
    budget_usd        stop cleanly before a call that would take the ledger's spend above this
    budget_scope      "total" (default: everything in this cache folder's ledger) or "stage"
    prices            {input_per_1k, output_per_1k} USD (default: built-in table by model name, cost.py)
    n_per_request     true (default): one request with n choices; false: n requests with seeds seed..seed+n-1
    max_tokens_param  "max_tokens" (default) or "max_completion_tokens" (newer OpenAI models)
    send_seed         pass `seed` to the API (default true)
    batch             use the Batch API for the calls missing from the cache (default false)
    batch_poll_s      seconds between batch status polls (default 30)
    batch_max_wait_s  give up waiting (the batch keeps running and a rerun resumes it) (default 26 h)
    batch_endpoint    default /v1/chat/completions (/chat/completions with azure_endpoint)
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ..cost import Budget, Ledger, call_cost, estimate_prompt_tokens, resolve_prices
from ..errors import StargateError
from ..log import get_logger
from .base import Backend, Prompt, Sampling
from .cache import ApiCache, normalize_sampling, request_key

log = get_logger(__name__)

OPTION_DEFAULTS: dict[str, Any] = {
    "base_url": None,
    "api_key_env": None,
    "organization_env": None,
    "azure_endpoint": None,
    "api_version": None,
    "max_concurrency": 8,
    "max_retries": 6,
    "timeout_s": 120.0,
    "backoff_base_s": 1.0,
    "backoff_max_s": 60.0,
    "cache_dir": None,
    "stage": None,
    "budget_usd": None,
    "budget_scope": "total",
    "prices": None,
    "n_per_request": True,
    "max_tokens_param": "max_tokens",
    "send_seed": True,
    "batch": False,
    "batch_poll_s": 30.0,
    "batch_max_wait_s": 26 * 3600.0,
    "batch_endpoint": None,
}
RETRYABLE_STATUS = {408, 409, 429}
REQUEST_SPECIFIC_STATUS = {400, 413, 422}  # this request is refused; the others may still succeed
MAX_RETRY_AFTER_S = 120.0
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_VALID_ROLES = {"system", "user", "assistant", "developer", "tool"}


class BudgetExceeded(StargateError):
    """The budget cap stopped a stage; everything already answered is in the cache."""


class ApiCallError(StargateError):
    """A call failed after its retries (or with a non-retryable error). Names the prompt and cache key.

    `fatal`: the failure concerns every call (server down, bad key, unknown model), so no new call is
    started; a failure of one request only (400, e.g. a content filter) lets the others finish first.
    """

    def __init__(self, message: str, fatal: bool = True):
        super().__init__(message)
        self.fatal = fatal


@dataclass
class ApiCall:
    """One HTTP request: prompt `index`, `sub` = which of n single-choice requests (n_per_request: false)."""

    index: int
    sub: int
    key: str
    messages: list[dict]
    sampling: dict
    prompt_tokens_est: int

    def body(self, model: str, max_tokens_param: str = "max_tokens", send_seed: bool = True) -> dict:
        s = self.sampling
        body = {
            "model": model,
            "messages": self.messages,
            "n": s["n"],
            "temperature": s["temperature"],
            "top_p": s["top_p"],
            max_tokens_param: s["max_tokens"],
        }
        if send_seed and s["seed"] is not None:
            body["seed"] = s["seed"]
        return body

    def where(self) -> str:
        sub = f", request {self.sub + 1}" if self.sub else ""
        return f"prompt {self.index}{sub} (cache key {self.key})"


class OpenAIBackend(Backend):
    name = "openai"

    def __init__(self, model: str, **options: Any):
        super().__init__()
        if "api_key" in options:
            raise StargateError(
                "option 'api_key' is not allowed: keys are read only from environment variables; "
                "set api_key_env to the NAME of the variable that holds the key"
            )
        unknown = sorted(set(options) - set(OPTION_DEFAULTS))
        if unknown:
            raise StargateError(
                f"unknown option(s) {', '.join(unknown)} for the openai backend "
                f"(accepted: {', '.join(OPTION_DEFAULTS)})"
            )
        opts = {**OPTION_DEFAULTS, **{k: v for k, v in options.items() if v is not None}}
        self.model = str(model)
        self.options = opts
        self.base_url = opts["base_url"]
        self.azure_endpoint = opts["azure_endpoint"]
        self.api_version = opts["api_version"] or os.environ.get("OPENAI_API_VERSION")
        env = opts["api_key_env"] or ("AZURE_OPENAI_API_KEY" if self.azure_endpoint else "OPENAI_API_KEY")
        if not _ENV_NAME.match(str(env)) or str(env).lower().startswith("sk"):
            raise StargateError(
                "option 'api_key_env' must be the NAME of an environment variable (e.g. OPENAI_API_KEY), "
                "not a key; put the key in that variable"
            )
        self.api_key_env = str(env)
        if self.azure_endpoint and not self.api_version:
            raise StargateError("azure_endpoint needs api_version (option, or $OPENAI_API_VERSION), e.g. 2024-10-21")
        self.max_concurrency = _positive_int(opts, "max_concurrency")
        self.max_retries = _nonneg_int(opts, "max_retries")
        self.timeout_s = float(opts["timeout_s"])
        self.backoff_base_s = float(opts["backoff_base_s"])
        self.backoff_max_s = float(opts["backoff_max_s"])
        self.stage = str(opts["stage"] or "unlabelled")
        if opts["max_tokens_param"] not in ("max_tokens", "max_completion_tokens"):
            raise StargateError("option 'max_tokens_param' must be max_tokens or max_completion_tokens")
        if opts["budget_scope"] not in ("total", "stage"):
            raise StargateError("option 'budget_scope' must be 'total' or 'stage'")
        self.cache = ApiCache(opts["cache_dir"])
        self.ledger = Ledger(self.cache.root / "ledger.jsonl")
        self.price = resolve_prices(self.model, opts["prices"])
        budget = opts["budget_usd"]
        self.budget = Budget(
            self.ledger,
            None if budget is None else float(budget),
            stage=self.stage if opts["budget_scope"] == "stage" else None,
        )
        if budget is not None and self.price is None:
            log.warning(
                "%s: budget_usd is set but no price is known for model '%s': costs count as 0; set options.prices",
                self.stage,
                self.model,
            )
        self.stats.extra.update(
            {
                k: 0
                for k in (
                    "cache_hits",
                    "api_calls",
                    "api_attempts",
                    "retries",
                    "prompt_tokens",
                    "completion_tokens",
                    "failed",
                    "skipped_budget",
                )
            }
        )
        self.stats.extra["cost_usd"] = 0.0
        self.stats.extra["finish_reasons"] = {}

    # ------------------------------------------------------------------------------- public
    def generate(self, prompts: Sequence[Prompt], sampling: Sampling) -> list[list[str]]:
        chats = [self._check_chat(p, i) for i, p in enumerate(prompts)]
        calls = self.plan(chats, sampling)
        entries = _run_sync(lambda: self._run(calls))
        outputs: list[list[str]] = [[] for _ in chats]
        for call in calls:  # calls are ordered by (index, sub)
            outputs[call.index].extend(c["text"] for c in entries[call.key]["response"]["choices"])
        for i, outs in enumerate(outputs):
            if len(outs) != sampling.n:  # cannot happen: entries are validated before they are stored
                raise StargateError(f"prompt {i}: {len(outs)} completions instead of n={sampling.n}")
        return self._count(outputs)

    def plan(self, chats: list[list[dict]], sampling: Sampling) -> list[ApiCall]:
        """The requests for these prompts, each with its cache key."""
        calls = []
        per_request = bool(self.options["n_per_request"]) or sampling.n == 1
        for i, messages in enumerate(chats):
            est = estimate_prompt_tokens(messages)
            subs = (
                [(0, sampling.n, sampling.seed)]
                if per_request
                else [(j, 1, None if sampling.seed is None else sampling.seed + j) for j in range(sampling.n)]
            )
            for j, n, seed in subs:
                s = normalize_sampling(n, sampling.temperature, sampling.top_p, sampling.max_tokens, seed)
                extra = {}
                if self.options["max_tokens_param"] != "max_tokens":
                    extra["max_tokens_param"] = self.options["max_tokens_param"]
                if not self.options["send_seed"]:
                    extra["send_seed"] = False
                key = request_key(self.model, messages, s, extra)
                calls.append(ApiCall(i, j, key, messages, s, est))
        return calls

    # ------------------------------------------------------------------------------ running
    async def _run(self, calls: list[ApiCall]) -> dict[str, dict]:
        entries: dict[str, dict] = {}
        unique: dict[str, ApiCall] = {}
        for c in calls:
            unique.setdefault(c.key, c)
        hit_tokens = [0, 0]
        for key in unique:
            entry = self.cache.get(key)
            if entry is not None:
                entries[key] = entry
                usage = entry["response"].get("usage") or {}
                hit_tokens[0] += int(usage.get("prompt_tokens") or 0)
                hit_tokens[1] += int(usage.get("completion_tokens") or 0)
        hits = len(entries)
        self.stats.extra["cache_hits"] += hits
        if hits:
            self.ledger.append(
                {
                    "stage": self.stage,
                    "model": self.model,
                    "kind": "cached",
                    "calls": hits,
                    "prompt_tokens": hit_tokens[0],
                    "completion_tokens": hit_tokens[1],
                    "cost_usd": 0.0,
                }
            )
        missing = [c for k, c in unique.items() if k not in entries]
        log.info(
            "%s: %d request(s) for %d prompt(s): %d from the cache, %d to make%s",
            self.stage,
            len(unique),
            len({c.index for c in calls}),
            hits,
            len(missing),
            " (Batch API)" if self.options["batch"] and missing else "",
        )
        if not missing:
            return entries
        if self.options["batch"]:
            from .batch import run_batch

            failures, skipped = await run_batch(self, missing, entries)
        else:
            failures, skipped = await self._online(missing, entries)
        self._raise_if_incomplete(calls, entries, failures, skipped)
        return entries

    async def _online(self, missing: list[ApiCall], entries: dict[str, dict]) -> tuple[list, list]:
        client = self.make_client()
        sem = asyncio.Semaphore(self.max_concurrency)
        stop = asyncio.Event()
        failures: list[tuple[ApiCall, str]] = []
        skipped: list[ApiCall] = []
        progress = _Progress(self.stage, len(missing))

        async def one(call: ApiCall) -> None:
            async with sem:
                if stop.is_set():
                    skipped.append(call)
                    return
                est = self.estimate_cost(call)
                if not self.budget.try_reserve(est):
                    stop.set()
                    skipped.append(call)
                    self.stats.extra["skipped_budget"] += 1
                    return
                try:
                    body = await self._call_with_retries(client, call)
                    entries[call.key] = self.store(call, body, kind="paid")
                    progress.tick(self)
                except ApiCallError as exc:
                    failures.append((call, str(exc)))
                    self.stats.extra["failed"] += 1
                    if exc.fatal:
                        stop.set()
                finally:
                    self.budget.release(est)

        try:
            await asyncio.gather(*(one(c) for c in missing))
        finally:
            await client.close()
        return failures, skipped

    async def _call_with_retries(self, client, call: ApiCall) -> dict:
        import openai

        body = call.body(self.model, self.options["max_tokens_param"], bool(self.options["send_seed"]))
        last = "no attempt"
        for attempt in range(self.max_retries + 1):
            retry_after = None
            self.stats.extra["api_attempts"] += 1
            try:
                resp = await client.chat.completions.create(**body, timeout=self.timeout_s)
                data = resp.model_dump() if hasattr(resp, "model_dump") else dict(resp)
                problem = validate_body(data, call.sampling["n"])
                if problem is None:
                    return data
                raise ApiCallError(f"{call.where()}: {problem}", fatal=False)
            except openai.APIStatusError as exc:
                status = exc.status_code
                last = f"HTTP {status}: {_short(exc)}"
                if status not in RETRYABLE_STATUS and status < 500:
                    hint = _status_hint(status, self.api_key_env)
                    fatal = status not in REQUEST_SPECIFIC_STATUS
                    raise ApiCallError(f"{call.where()}: {last}{hint} (not retried)", fatal=fatal) from None
                retry_after = _retry_after(exc)
            except openai.APITimeoutError:
                last = f"timed out after {self.timeout_s:g} s"
            except openai.APIConnectionError as exc:
                last = f"connection error ({_short(exc)})"
            except openai.APIError as exc:  # e.g. a body that is not valid JSON
                last = f"{type(exc).__name__}: {_short(exc)}"
            if attempt < self.max_retries:
                delay = self.backoff_delay(attempt, retry_after)
                self.stats.extra["retries"] += 1
                log.warning(
                    "%s: %s: %s; retry %d/%d in %.1f s",
                    self.stage,
                    call.where(),
                    last,
                    attempt + 1,
                    self.max_retries,
                    delay,
                )
                await asyncio.sleep(delay)
        raise ApiCallError(f"{call.where()}: failed after {self.max_retries + 1} attempts; last error: {last}")

    def backoff_delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Exponential backoff with equal jitter: uniform in [d/2, d], d = min(max, base * 2**attempt)."""
        d = min(self.backoff_max_s, self.backoff_base_s * (2**attempt))
        delay = d / 2 + random.uniform(0, d / 2)
        if retry_after is not None:
            delay = max(delay, min(retry_after, MAX_RETRY_AFTER_S))
        return delay

    # ------------------------------------------------------------------------ bookkeeping
    def estimate_cost(self, call: ApiCall, batch: bool = False) -> float:
        s = call.sampling
        return call_cost(call.prompt_tokens_est, s["n"] * s["max_tokens"], self.price, batch)

    def store(self, call: ApiCall, body: dict, kind: str) -> dict:
        """Ledger line first (a kill in between over-counts, never under-counts), then the cache entry."""
        usage = body.get("usage") or {}
        pt = int(usage.get("prompt_tokens") or call.prompt_tokens_est)
        ct = int(usage.get("completion_tokens") or 0)
        cost = call_cost(pt, ct, self.price, batch=(kind == "batch"))
        self.ledger.append(
            {
                "stage": self.stage,
                "model": self.model,
                "kind": kind,
                "calls": 1,
                "key": call.key,
                "prompt_tokens": pt,
                "completion_tokens": ct,
                "cost_usd": round(cost, 8),
            }
        )
        choices = sorted(body.get("choices") or [], key=lambda c: c.get("index", 0))
        entry = {
            "model": self.model,
            "request": {"messages": call.messages, "sampling": call.sampling},
            "response": {
                "id": body.get("id"),
                "model": body.get("model"),
                "choices": [
                    {"text": (c.get("message") or {}).get("content") or "", "finish_reason": c.get("finish_reason")}
                    for c in choices
                ],
                "usage": {"prompt_tokens": pt, "completion_tokens": ct},
            },
            "source": kind,
            "stage": self.stage,
        }
        self.cache.put(call.key, entry)
        ex = self.stats.extra
        ex["api_calls"] += 1
        ex["prompt_tokens"] += pt
        ex["completion_tokens"] += ct
        ex["cost_usd"] += cost
        self.stats.n_tokens_out += ct
        for c in entry["response"]["choices"]:
            fr = str(c["finish_reason"])
            ex["finish_reasons"][fr] = ex["finish_reasons"].get(fr, 0) + 1
        return entry

    def _raise_if_incomplete(self, calls, entries, failures, skipped) -> None:
        todo = [c for c in calls if c.key not in entries]
        if not todo:
            return
        done = len({c.key for c in calls if c.key in entries})
        total = len({c.key for c in calls})
        if failures:
            shown = "; ".join(msg for _, msg in failures[:5])
            more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
            raise ApiCallError(
                f"{self.stage}: {len(failures)} API call(s) failed: {shown}{more}. {done} of {total} requests are "
                f"answered and cached; rerun to retry the rest (cached calls are not repeated)"
            )
        if self.stats.extra["skipped_budget"] or self.budget.limit is not None:
            raise BudgetExceeded(
                f"{self.stage}: budget_usd={self.budget.limit:g} reached ({self.budget.spent():.4f} USD already spent "
                f"in {self.ledger.path}{' for this stage' if self.budget.stage else ''}); {done} of {total} requests are "
                f"answered and cached, {len(todo)} were not made. Raise budget_usd and rerun: cached calls cost nothing"
            )
        raise ApiCallError(f"{self.stage}: {len(todo)} request(s) got no answer, e.g. {todo[0].where()}")

    # ------------------------------------------------------------------------------ client
    def api_key(self) -> str:
        key = os.environ.get(self.api_key_env)
        if key:
            return key
        if self.base_url and not self.azure_endpoint:
            log.info(
                "%s: $%s is not set; sending a placeholder key to %s", self.stage, self.api_key_env, self.base_url
            )
            return "EMPTY"
        raise StargateError(
            f"{self.stage}: the openai backend needs an API key: set the environment variable "
            f"{self.api_key_env} (or name another variable with the role option api_key_env)"
        )

    def make_client(self):
        import openai

        common = {"api_key": self.api_key(), "max_retries": 0, "timeout": self.timeout_s}
        org_env = self.options["organization_env"]
        if org_env and os.environ.get(org_env):
            common["organization"] = os.environ[org_env]
        if self.azure_endpoint:
            return openai.AsyncAzureOpenAI(azure_endpoint=self.azure_endpoint, api_version=self.api_version, **common)
        return openai.AsyncOpenAI(base_url=self.base_url, **common)

    @staticmethod
    def _check_chat(prompt: Prompt, i: int) -> list[dict]:
        if isinstance(prompt, str):
            raise StargateError(
                f"prompt {i} is a raw string, but the openai backend takes chat prompts (lists of role/content "
                f"messages) only: use a prompt set that renders chats for this role (e.g. prompts: fixed_v1), or "
                f"bind the role to the hf or vllm backend"
            )
        if not isinstance(prompt, list | tuple) or not prompt:
            raise StargateError(f"prompt {i} is not a chat (a non-empty list of messages)")
        out = []
        for m in prompt:
            if not isinstance(m, dict) or m.get("role") not in _VALID_ROLES or not isinstance(m.get("content"), str):
                raise StargateError(
                    f"prompt {i}: every message needs a role ({', '.join(sorted(_VALID_ROLES))}) "
                    f"and a string content, got {str(m)[:80]!r}"
                )
            out.append({"role": m["role"], "content": m["content"]})
        return out


def validate_body(data: dict, n: int) -> str | None:
    """Why a chat-completion body is unusable (None if it is fine)."""
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        return "the response has no choices"
    if len(choices) != n:
        return (
            f"the server returned {len(choices)} choice(s) for n={n}; if it does not support n>1, "
            f"set the role option n_per_request: false"
        )
    for c in choices:
        if not isinstance(c, dict) or not isinstance(c.get("message"), dict):
            return "a choice has no message"
    return None


class _Progress:
    def __init__(self, stage: str, total: int):
        self.stage, self.total, self.done, self.t0, self.last = stage, total, 0, time.monotonic(), time.monotonic()

    def tick(self, backend: OpenAIBackend) -> None:
        self.done += 1
        now = time.monotonic()
        if self.done == self.total or now - self.last > 30 or self.done % 500 == 0:
            self.last = now
            ex = backend.stats.extra
            log.info(
                "%s: %d/%d calls made (%.0f s, %d retries, %d+%d tokens, %.4f USD)",
                self.stage,
                self.done,
                self.total,
                now - self.t0,
                ex["retries"],
                ex["prompt_tokens"],
                ex["completion_tokens"],
                ex["cost_usd"],
            )


def _run_sync(make_coro):
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make_coro())
    with ThreadPoolExecutor(max_workers=1) as pool:  # called from inside an event loop (e.g. a notebook)
        return pool.submit(lambda: asyncio.run(make_coro())).result()


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
        return " (the request was rejected; an Azure content filter also answers 400)"
    return ""


def _short(exc: Exception, limit: int = 200) -> str:
    text = " ".join(str(exc).split())
    return text[:limit] + ("..." if len(text) > limit else "")


def _positive_int(opts: dict, name: str) -> int:
    v = opts[name]
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise StargateError(f"option '{name}' must be a positive integer, got {v!r}")
    return v


def _nonneg_int(opts: dict, name: str) -> int:
    v = opts[name]
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise StargateError(f"option '{name}' must be an integer >= 0, got {v!r}")
    return v
