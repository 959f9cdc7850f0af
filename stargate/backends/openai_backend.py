"""The `openai` backend: OpenAI, Azure OpenAI, or any OpenAI-compatible server (vLLM, llama.cpp, ...).

A thin facade over `stargate/api/`: it checks its typed options (`OpenAIOptions`, documented in
config/schema.yaml `$defs.openai_options` and docs/api-backends.md), plans the requests
(`api/requests.py`), replays what the cache holds, hands the rest to the online runner (`api/online.py`)
or the Batch API runner (`api/batch.py`) with an explicit `RunSettings`, and assembles the outputs.
Money goes through `api/accounting.py`; answers enter the cache through `api/responses.py`.

Chat prompts only. A call that still fails is reported with its prompt index and cache key; it is never
replaced by a made-up answer (the original returned "Final Response: C"). A request refused by a content
filter raises (`refusals: fail`) or comes back as None in place of its text (`refusals: count`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any
from urllib.parse import urlparse

import openai

from ..api.accounting import Accounting, BudgetExceeded, Ledger, resolve_prices
from ..api.batch import run_batch
from ..api.cache import ApiCache
from ..api.online import run_online
from ..api.requests import MAX_TOKENS_PARAMS, ApiCall, ApiCallError, check_chat, plan_calls
from ..api.responses import Responses, texts
from ..api.settings import RunOutcome, RunSettings
from ..errors import StargateError
from ..log import get_logger
from .base import Backend, Prompt, Sampling
from .options import OpenAIOptions, parse_options

log = get_logger(__name__)

__all__ = ["ApiCallError", "BudgetExceeded", "OpenAIBackend"]

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
REFUSAL_MODES = ("fail", "count")


class OpenAIBackend(Backend):
    name = "openai"

    def __init__(
        self,
        model: str,
        options: OpenAIOptions | dict[str, Any] | None = None,
        *,
        stage: str | None = None,
        default_cache_dir: str | os.PathLike | None = None,
        **raw_options: Any,
    ):
        """`options`: typed, or the role's option mapping (also accepted as keywords); `stage` labels the
        ledger lines; `default_cache_dir` is used when the option cache_dir is unset (else
        $STARGATE_API_CACHE, else resources/api-cache)."""
        super().__init__()
        if options is not None and raw_options:
            raise StargateError("give the openai backend its options either as one object or as keywords, not both")
        if options is not None and not isinstance(options, OpenAIOptions | dict):
            raise StargateError(
                f"the openai backend's options must be a mapping, got {type(options).__name__} "
                "(fix roles.<role>.options in the config)"
            )
        if not isinstance(options, OpenAIOptions):
            raw_options = {**(options or {}), **raw_options}
            options = None
        if "api_key" in raw_options:
            raise StargateError(
                "option 'api_key' is not allowed: keys are read only from environment variables; "
                "set api_key_env to the NAME of the variable that holds the key (roles.<role>.options)"
            )
        opts = options if options is not None else parse_options(OpenAIOptions, _drop_none(raw_options), "openai")
        _check_options(opts)
        self.options = opts
        self.stage = str(stage or "unlabelled")
        self.azure = bool(opts.azure_endpoint or opts.azure_endpoint_env)
        self.model = (
            _env(opts.azure_deployment_env, "azure_deployment_env") if opts.azure_deployment_env else str(model)
        )
        self.api_version = opts.api_version or os.environ.get("OPENAI_API_VERSION")
        if self.azure and not self.api_version:
            raise StargateError(
                "azure_endpoint (or azure_endpoint_env) needs api_version (option, or $OPENAI_API_VERSION), "
                "e.g. 2024-10-21; fix roles.<role>.options"
            )
        self.api_key_env = opts.api_key_env or ("AZURE_OPENAI_API_KEY" if self.azure else "OPENAI_API_KEY")
        self.settings = RunSettings(
            model=self.model,
            stage=self.stage,
            max_concurrency=opts.max_concurrency,
            max_retries=opts.max_retries,
            timeout_s=float(opts.timeout_s),
            backoff_base_s=float(opts.backoff_base_s),
            backoff_max_s=float(opts.backoff_max_s),
            max_tokens_param=opts.max_tokens_param,
            send_seed=bool(opts.send_seed),
            batch_poll_s=float(opts.batch_poll_s),
            batch_max_wait_s=float(opts.batch_max_wait_s),
            batch_endpoint=opts.batch_endpoint or ("/chat/completions" if self.azure else "/v1/chat/completions"),
            key_env=self.api_key_env,
        )
        self.cache = ApiCache(opts.cache_dir or default_cache_dir)
        self.ledger = Ledger(self.cache.root / "ledger.jsonl")
        price = resolve_prices(self.model, opts.prices)
        self.accounting = Accounting(self.ledger, self.model, self.stage, price, opts.budget_usd, opts.budget_scope)
        self.responses = Responses(self.cache, self.accounting)
        if opts.budget_usd is not None and price is None:
            log.warning(
                "%s: budget_usd is set but no price is known for model '%s': costs count as 0; set options.prices",
                self.stage,
                self.model,
            )
        self._publish_stats()

    # ------------------------------------------------------------------------------- public
    def generate(
        self, prompts: Sequence[Prompt], sampling: Sampling, seeds: Sequence[int] | None = None
    ) -> list[list[str | None]]:
        """`sampling.n` completions per prompt. `seeds`: one per prompt (None: every prompt gets
        `sampling.seed`, as before per-prompt seeds, so existing cache entries still match). A completion
        is None only where a content filter refused it and `refusals: count`."""
        chats = [check_chat(p, i) for i, p in enumerate(prompts)]
        calls = self.plan(chats, sampling, seeds)
        try:
            entries = _run_sync(lambda: self._run(calls))
        finally:  # what was paid is reported even when the stage stops here
            self._publish_stats()
        outputs: list[list[str | None]] = [[] for _ in chats]
        for call in calls:  # calls are ordered by (index, sub)
            outputs[call.index].extend(texts(entries[call.key]))
        refused = [c for c in calls if None in texts(entries[c.key])]
        if refused and self.options.refusals == "fail":
            shown = "; ".join(c.where() for c in refused[:5])
            raise StargateError(
                f"{self.stage}: {len(refused)} request(s) refused by a content filter: {shown}. The refusals are "
                f"cached (not paid again); set the role option refusals: count to go on with None in their place"
            )
        return self._tally_outputs(outputs)

    def plan(self, chats: list[list[dict]], sampling: Sampling, seeds: Sequence[int] | None = None) -> list[ApiCall]:
        """The requests for these chats, each with its cache key."""
        seeds = [sampling.seed] * len(chats) if seeds is None else [int(s) for s in seeds]
        o = self.options
        return plan_calls(
            self.model,
            chats,
            sampling,
            seeds,
            n_per_request=bool(o.n_per_request),
            max_tokens_param=o.max_tokens_param,
            send_seed=bool(o.send_seed),
        )

    def backoff_delay(self, attempt: int, retry_after: float | None = None) -> float:
        return self.settings.backoff_delay(attempt, retry_after)

    def estimate_cost(self, call: ApiCall, batch: bool = False) -> float:
        return self.accounting.estimate(call, batch)

    # ------------------------------------------------------------------------------ running
    async def _run(self, calls: list[ApiCall]) -> dict[str, dict]:
        entries = self.responses.lookup(calls)
        unique: dict[str, ApiCall] = {}
        for c in calls:  # identical requests (same key) are made once
            unique.setdefault(c.key, c)
        missing = [c for k, c in unique.items() if k not in entries]
        log.info(
            "%s: %d request(s) for %d prompt(s): %d from the cache, %d to make%s",
            self.stage,
            len(unique),
            len({c.index for c in calls}),
            len(entries),
            len(missing),
            " (Batch API)" if self.options.batch and missing else "",
        )
        if missing:
            client = self.make_client()
            try:
                runner = run_batch if self.options.batch else run_online
                outcome = await runner(missing, self.settings, client, self.responses)
            finally:
                await client.close()
            for c in missing:
                entry = self.cache.get(c.key)
                if entry is not None:
                    entries[c.key] = entry
            if outcome.budget_stopped:
                self.accounting.tally.skipped_budget += len(outcome.skipped)
            self._raise_if_incomplete(calls, entries, outcome)
        return entries

    def _raise_if_incomplete(self, calls: list[ApiCall], entries: dict, outcome: RunOutcome) -> None:
        todo = [c for c in calls if c.key not in entries]
        if not todo:
            return
        done = len({c.key for c in calls if c.key in entries})
        total = len({c.key for c in calls})
        failures = outcome.failures
        if failures:
            shown = "; ".join(msg for _, msg in failures[:5])
            more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
            raise ApiCallError(
                f"{self.stage}: {len(failures)} API call(s) failed: {shown}{more}. {done} of {total} requests are "
                f"answered and cached; rerun to retry the rest (cached calls are not repeated)"
            )
        if outcome.budget_stopped:
            raise self.accounting.budget_exceeded(done, total, len({c.key for c in todo}))
        raise ApiCallError(f"{self.stage}: {len(todo)} request(s) got no answer, e.g. {todo[0].where()}")

    def _tally_outputs(self, outputs: list[list[str | None]]) -> list[list[str | None]]:
        self._count(outputs)  # n_prompts, n_outputs, n_empty, n_refused (base.py)
        self._publish_stats()
        return outputs

    def _publish_stats(self) -> None:
        """Copy the accounting tally into `stats` (stages write stats into the artifact's .meta.json)."""
        tally = asdict(self.accounting.tally)
        tally["cost_usd"] = round(tally["cost_usd"], 8)
        tally["refused"] = self.stats.n_refused  # counted once, by base._count; named as the other API counters
        self.stats.extra.update(tally)
        self.stats.n_tokens_in = self.accounting.tally.tokens_in
        self.stats.n_tokens_out = self.accounting.tally.tokens_out

    # ------------------------------------------------------------------------------ client
    def api_key(self) -> str:
        key = os.environ.get(self.api_key_env)
        if key:
            return key
        if self.options.base_url and not self.azure and is_local_server(self.options.base_url):
            log.info(
                "%s: $%s is not set; sending a placeholder key to the local server %s",
                self.stage,
                self.api_key_env,
                self.options.base_url,
            )
            return "EMPTY"
        where = f" for {self.options.base_url}" if self.options.base_url else ""
        raise StargateError(
            f"{self.stage}: the openai backend needs an API key{where}: set the environment variable "
            f"{self.api_key_env} (or name another variable with the role option api_key_env); "
            f"a server that needs no key: set {self.api_key_env}=EMPTY"
        )

    def make_client(self):
        """The async client; built only when a call is needed, so cached runs need no key or endpoint."""
        o = self.options
        common: dict[str, Any] = {"api_key": self.api_key(), "max_retries": 0, "timeout": self.settings.timeout_s}
        if o.organization_env and os.environ.get(o.organization_env):
            common["organization"] = os.environ[o.organization_env]
        if self.azure:
            endpoint = o.azure_endpoint or _env(o.azure_endpoint_env, "azure_endpoint_env")
            return openai.AsyncAzureOpenAI(azure_endpoint=endpoint, api_version=self.api_version, **common)
        return openai.AsyncOpenAI(base_url=o.base_url, **common)


# ------------------------------------------------------------------------------------------ helpers
def is_local_server(base_url: str) -> bool:
    """A server on this machine or a private network (a vLLM node of the cluster), where the usual
    self-hosted server takes no key. Anything else gets no placeholder: a public API would answer a
    missing key with retries and a vague error, and a real key must never be guessed."""
    host = (urlparse(base_url).hostname or "").lower()
    if host == "localhost" or "." not in host and ":" not in host and host:
        return True  # localhost, or a bare cluster node name
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_private or ip.is_unspecified


def _drop_none(raw: dict[str, Any]) -> dict[str, Any]:
    """Keys given as null mean 'the default' (config files write `azure_endpoint: null`)."""
    return {k: v for k, v in raw.items() if v is not None}


def _env(name: str, option: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise StargateError(f"option {option}: the environment variable {name} is not set (set it, or unset {option})")
    return value


def _check_options(o: OpenAIOptions) -> None:
    """Types and ranges the dataclass cannot enforce; each message names the option and the fix."""
    where = "roles.<role>.options"

    def bad(name: str, want: str) -> StargateError:
        return StargateError(f"option '{name}' must be {want}, got {getattr(o, name)!r} ({where})")

    for name in ("max_concurrency", "max_retries"):
        v = getattr(o, name)
        low = 1 if name == "max_concurrency" else 0
        if not isinstance(v, int) or isinstance(v, bool) or v < low:
            raise bad(name, "a positive integer" if low else "an integer >= 0")
    for name in ("timeout_s", "batch_poll_s", "batch_max_wait_s", "backoff_base_s", "backoff_max_s"):
        v = getattr(o, name)
        positive = name in ("timeout_s", "batch_poll_s", "batch_max_wait_s")
        if not isinstance(v, int | float) or isinstance(v, bool) or v < 0 or (positive and v == 0):
            raise bad(name, "a number > 0" if positive else "a number >= 0")
    if o.budget_usd is not None and (not isinstance(o.budget_usd, int | float) or o.budget_usd < 0):
        raise bad("budget_usd", "a number >= 0 or null")
    for name, allowed in (
        ("max_tokens_param", MAX_TOKENS_PARAMS),
        ("budget_scope", ("total", "stage")),
        ("refusals", REFUSAL_MODES),
    ):
        if getattr(o, name) not in allowed:
            raise bad(name, " or ".join(allowed))
    for name in ("n_per_request", "send_seed", "batch"):
        if not isinstance(getattr(o, name), bool):
            raise bad(name, "true or false")
    for name in ("api_key_env", "organization_env", "azure_endpoint_env", "azure_deployment_env"):
        v = getattr(o, name)
        if v is not None and (not isinstance(v, str) or not _ENV_NAME.match(v) or v.lower().startswith("sk")):
            # never echo the value: it may be a key pasted by mistake
            raise StargateError(
                f"option '{name}' must be the NAME of an environment variable (e.g. OPENAI_API_KEY), not a key "
                f"or a URL; put the value in that variable ({where})"
            )
    if o.azure_endpoint and o.azure_endpoint_env:
        raise StargateError(f"options azure_endpoint and azure_endpoint_env exclude each other: keep one ({where})")


def _run_sync(make_coro):
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make_coro())
    with ThreadPoolExecutor(max_workers=1) as pool:  # called from inside an event loop (e.g. a notebook)
        return pool.submit(lambda: asyncio.run(make_coro())).result()
